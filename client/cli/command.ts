import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';
import type { CleanroomApi } from '../sdk/api-client.ts';
import type { FetchLike } from '../sdk/transport.ts';
import type { CliConfig } from './config.ts';
import { UsageError } from './errors.ts';
import type { Io } from './output.ts';

/** What every command may use; built once by the composition root. */
export interface CliContext {
  config: CliConfig;
  io: Io;
  fetch: FetchLike;
  now: () => Date;
  /** The sessions API, authenticated with the stored (refreshed) token. */
  api: CleanroomApi;
  /** True when stderr is a terminal: progress lines are drawn there, never into a file or pipe. */
  stderrIsTty: boolean;
}

/** One command of the command table. */
export interface Command {
  /** The words after `cleanroom`, e.g. `['session', 'create']`. */
  path: readonly string[];
  /** The usage line shown with `--help` and with usage errors. */
  usage: string;
  summary: string;
  /** Option lines for `--help`. */
  options: ReadonlyArray<readonly [flag: string, description: string]>;
  run(ctx: CliContext, argv: string[]): Promise<void>;
}

/** The option every command takes besides `--help`. */
export const JSON_OPTION = { json: { type: 'boolean' } } as const;

/**
 * `parseArgs` in strict mode with exactly the named positionals; any mistake is a UsageError
 * carrying the command's usage line.
 */
export function parseCommandArgs<const O extends ParseArgsOptionsConfig>(command: Pick<Command, 'usage'>, argv: string[], options: O, positionalNames: readonly string[] = []) {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: true, allowNegative: true });
  } catch (error) {
    if (isParseArgsError(error)) throw new UsageError(firstSentence(error.message), command.usage);
    throw error;
  }
  if (parsed.positionals.length < positionalNames.length) {
    throw new UsageError(`missing ${positionalNames[parsed.positionals.length]}`, command.usage);
  }
  if (parsed.positionals.length > positionalNames.length) {
    throw new UsageError(`unexpected argument '${parsed.positionals[positionalNames.length]}'`, command.usage);
  }
  return parsed;
}

/** A required option's value, or a UsageError naming it. */
export function required<T>(command: Pick<Command, 'usage'>, value: T | undefined, flag: string): T {
  if (value === undefined) throw new UsageError(`missing ${flag}`, command.usage);
  return value;
}

/** An option value from a closed set, or a UsageError listing the choices. */
export function oneOf<const T extends string>(command: Pick<Command, 'usage'>, value: string | undefined, choices: readonly T[], flag: string): T | undefined {
  if (value === undefined) return undefined;
  if ((choices as readonly string[]).includes(value)) return value as T;
  throw new UsageError(`${flag} must be one of ${choices.join(', ')}`, command.usage);
}

function isParseArgsError(error: unknown): error is Error {
  return error instanceof Error && typeof (error as NodeJS.ErrnoException).code === 'string' && (error as NodeJS.ErrnoException).code!.startsWith('ERR_PARSE_ARGS_');
}

function firstSentence(message: string): string {
  return message.split('. ')[0]!.replace(/\.$/, '');
}
