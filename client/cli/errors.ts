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
  | 'FILE_UNSUPPORTED';

/** An expected CLI failure: printed as `error: CODE: message`, never with a stack. */
export class CliError extends Error {
  readonly code: CliErrorCode;
  /** 2 for usage and configuration mistakes, 1 otherwise. */
  readonly exitCode: number;

  constructor(code: CliErrorCode, message: string, options?: { exitCode?: number; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CliError';
    this.code = code;
    this.exitCode = options?.exitCode ?? 1;
  }
}

/** A command line the CLI cannot run; `usage` is the line that shows the right form. */
export class UsageError extends CliError {
  readonly usage: string;

  constructor(message: string, usage: string) {
    super('USAGE', message, { exitCode: 2 });
    this.name = 'UsageError';
    this.usage = usage;
  }
}
