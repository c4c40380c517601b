import { EXIT, type ExitCode } from './exit-codes.ts';

/** The CLI's own failure codes; API failures keep the API's codes. */
export type CliErrorCode =
  | 'USAGE'
  | 'CONFIG_INVALID'
  | 'NOT_LOGGED_IN'
  | 'TOKEN_EXPIRED'
  | 'CREDENTIALS_INVALID'
  | 'SIGN_IN_UNSUPPORTED'
  | 'WAIT_TIMEOUT'
  | 'KEYS_NOT_FOUND'
  | 'KEYS_INVALID'
  | 'FILE_UNSUPPORTED'
  | 'QUERY_FAILED'
  | 'QUERY_REJECTED'
  | 'QUERY_CANCELLED'
  | 'QUERY_EXPIRED'
  | 'AUDIT_CHAIN_BROKEN'
  | 'AUDIT_HEAD_INVALID'
  | 'NODE_TOO_OLD';

/** An expected CLI failure: printed as `error: CODE: message`, never with a stack. */
export class CliError extends Error {
  readonly code: CliErrorCode;
  /** See `exit-codes.ts`: 2 for usage and configuration mistakes, 1 (refused) by default. */
  readonly exitCode: ExitCode;

  constructor(code: CliErrorCode, message: string, options?: { exitCode?: ExitCode; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CliError';
    this.code = code;
    this.exitCode = options?.exitCode ?? EXIT.refused;
  }
}

/** A command line the CLI cannot run; `usage` is the line that shows the right form. */
export class UsageError extends CliError {
  readonly usage: string;

  constructor(message: string, usage: string) {
    super('USAGE', message, { exitCode: EXIT.usage });
    this.name = 'UsageError';
    this.usage = usage;
  }
}
