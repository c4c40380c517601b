import type { Command } from '../command.ts';
import { attest } from './attest.ts';
import { audit } from './audit.ts';
import { login, logout, token } from './auth.ts';
import { datasetList, datasetUpload } from './dataset.ts';
import { participantAdd, participantRemove } from './participant.ts';
import { queryApprove, queryCancel, queryList, queryPropose, queryReject, queryShow } from './query.ts';
import { resultGet } from './result.ts';
import { sessionJoin } from './session-join.ts';
import { sessionClose, sessionCreate, sessionList, sessionShow } from './session.ts';

/** Every command of the CLI, in the order `--help` lists them. */
export const COMMANDS: readonly Command[] = [
  login,
  logout,
  token,
  sessionCreate,
  sessionList,
  sessionShow,
  sessionClose,
  sessionJoin,
  participantAdd,
  participantRemove,
  datasetUpload,
  datasetList,
  queryPropose,
  queryList,
  queryShow,
  queryApprove,
  queryReject,
  queryCancel,
  resultGet,
  audit,
  attest,
];
