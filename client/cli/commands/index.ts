import type { Command } from '../command.ts';
import { login, logout, token } from './auth.ts';
import { sessionClose, sessionCreate, sessionList, sessionShow } from './session.ts';

/** Every command of the CLI, in the order `--help` lists them. */
export const COMMANDS: readonly Command[] = [login, logout, token, sessionCreate, sessionList, sessionShow, sessionClose];
