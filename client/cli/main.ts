import { CleanroomError } from '../../protocol/errors.ts';
import { CleanroomApi } from '../sdk/api-client.ts';
import { TransportError } from '../sdk/errors.ts';
import type { FetchLike } from '../sdk/transport.ts';
import type { CliContext, Command } from './command.ts';
import { COMMANDS } from './commands/index.ts';
import { loadCliConfig } from './config.ts';
import { CliError, UsageError } from './errors.ts';
import { EXIT, exitCodeForStatus, type ExitCode } from './exit-codes.ts';
import { commandHelp, groupHelp } from './help.ts';
import { currentCredentials } from './identity.ts';
import type { Io } from './output.ts';
import { cliVersion } from './version.ts';

/** What the composition root may be handed instead of the real process (tests). */
export interface MainOptions {
  io?: Io;
  fetch?: FetchLike;
  now?: () => Date;
  /** Whether stderr is a terminal (default: the process's stderr). */
  stderrIsTty?: boolean;
}

const TOP_USAGE = 'cleanroom <command> [options]   (cleanroom --help lists the commands)';

/**
 * The CLI's composition root: reads the environment once, builds the API client, dispatches to
 * a command and turns failures into `error: CODE: message` on stderr. Returns the exit code of
 * `exit-codes.ts`: 0 done, 1 refused, 2 usage, 3 the waited-for query did not succeed, 4 no
 * usable answer (unreachable, 5xx), 5 gave up waiting.
 */
export async function main(argv: readonly string[], env: Record<string, string | undefined>, options: MainOptions = {}): Promise<number> {
  const io = options.io ?? processIo();
  try {
    const words = argv.slice(0, argv.includes('--') ? argv.indexOf('--') : argv.length);
    const wantsHelp = words.includes('--help') || words.includes('-h');
    if (argv[0] === '--version' || argv[0] === '-V' || argv[0] === 'version') {
      io.stdout(`cleanroom ${cliVersion()}\n`);
      return EXIT.ok;
    }
    const found = findCommand(argv);
    if (found === null) {
      const prefix = commandGroup(argv);
      if (wantsHelp || argv[0] === 'help') {
        io.stdout(groupHelp(COMMANDS, prefix));
        return EXIT.ok;
      }
      if (argv.length === 0) throw new UsageError('no command given', TOP_USAGE);
      if (prefix.length > 0 && (argv.length === prefix.length || argv[prefix.length]!.startsWith('-'))) {
        throw new UsageError(`${prefix.join(' ')}: missing subcommand`, groupUsage(prefix));
      }
      const unknown = argv.slice(0, prefix.length + 1).join(' ');
      throw new UsageError(`unknown command '${unknown}'`, prefix.length > 0 ? groupUsage(prefix) : TOP_USAGE);
    }
    const { command, rest } = found;
    if (wantsHelp) {
      io.stdout(commandHelp(command));
      return EXIT.ok;
    }
    await command.run(buildContext(env, io, options), rest);
    return EXIT.ok;
  } catch (error) {
    return report(io, error);
  }
}

function buildContext(env: Record<string, string | undefined>, io: Io, options: MainOptions): CliContext {
  const config = loadCliConfig(env);
  const fetchFn: FetchLike = options.fetch ?? ((input, init) => fetch(input, init));
  const now = options.now ?? (() => new Date());
  const api = new CleanroomApi({
    baseUrl: config.api,
    fetch: fetchFn,
    token: async () => (await currentCredentials({ api: config.api, home: config.home, fetch: fetchFn, now })).id_token,
  });
  return { config, io, fetch: fetchFn, now, api, stderrIsTty: options.stderrIsTty ?? process.stderr.isTTY === true };
}

function findCommand(argv: readonly string[]): { command: Command; rest: string[] } | null {
  for (const command of COMMANDS) {
    if (command.path.every((word, i) => argv[i] === word)) return { command, rest: argv.slice(command.path.length) };
  }
  return null;
}

/** The longest run of leading words that names a group of commands, e.g. `['session']`. */
function commandGroup(argv: readonly string[]): string[] {
  const prefix: string[] = [];
  for (const word of argv) {
    const next = [...prefix, word];
    if (!COMMANDS.some((c) => c.path.length > next.length && next.every((w, i) => c.path[i] === w))) break;
    prefix.push(word);
  }
  return prefix;
}

function groupUsage(prefix: readonly string[]): string {
  const subcommands = COMMANDS.filter((c) => prefix.every((w, i) => c.path[i] === w)).map((c) => c.path[prefix.length]);
  return `cleanroom ${prefix.join(' ')} ${subcommands.join('|')} [options]`;
}

/** Expected failures get one line (and a usage line); only a bug gets a stack. */
function report(io: Io, error: unknown): ExitCode {
  if (error instanceof UsageError) {
    io.stderr(`error: ${error.code}: ${error.message}\nusage: ${error.usage}\n`);
    return error.exitCode;
  }
  if (error instanceof CliError) {
    io.stderr(`error: ${error.code}: ${error.message}\n`);
    return error.exitCode;
  }
  if (error instanceof CleanroomError) {
    const hint = error.code === 'UNAUTHENTICATED' ? '\nhint: the API refused the stored token: run `cleanroom login` again' : '';
    const retry = error.retryAfter !== undefined ? ` (retry in ${error.retryAfter} s)` : '';
    io.stderr(`error: ${error.code}: ${error.message}${retry}${hint}\n`);
    return exitCodeForStatus(error.status);
  }
  if (error instanceof TransportError) {
    io.stderr(`error: ${error.code}: ${error.message}\n`);
    return EXIT.unavailable;
  }
  if (isSystemError(error)) {
    // The file system said no (CLEANROOM_HOME not writable, not a directory...): the user can fix it.
    io.stderr(`error: ${error.code}: ${error.message}\n`);
    return EXIT.refused;
  }
  io.stderr(`error: INTERNAL: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  return EXIT.unavailable;
}

function isSystemError(error: unknown): error is NodeJS.ErrnoException & { code: string } {
  const e = error as NodeJS.ErrnoException;
  return error instanceof Error && typeof e.code === 'string' && typeof e.syscall === 'string';
}

function processIo(): Io {
  return {
    stdout: (text) => void process.stdout.write(text),
    stderr: (text) => void process.stderr.write(text),
  };
}
