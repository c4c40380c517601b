import type { Command } from '../command.ts';
import { attest } from './attest.ts';
import { login, logout, token } from './auth.ts';
import { queryApprove, queryCancel, queryList, queryPropose, queryReject, queryShow } from './query.ts';
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
  queryPropose,
  queryList,
  queryShow,
  queryApprove,
  queryReject,
  queryCancel,
  attest,
];
