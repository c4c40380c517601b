import type { Command } from './command.ts';
import { examplesOf } from './examples.ts';
import { EXIT_CODE_HELP } from './exit-codes.ts';

/** `cleanroom --help`, or the help of a command group such as `session`. */
export function groupHelp(commands: readonly Command[], prefix: readonly string[] = []): string {
  const shown = commands.filter((c) => prefix.every((word, i) => c.path[i] === word));
  const width = Math.max(...shown.map((c) => c.path.join(' ').length));
  const lines = [
    `usage: cleanroom ${prefix.length > 0 ? `${prefix.join(' ')} ` : ''}<command> [options]`,
    '',
    'Commands:',
    ...shown.map((c) => `  ${c.path.join(' ').padEnd(width)}  ${c.summary}`),
    '',
    'Every command takes --json for machine-readable output and --help for its options and examples.',
    'cleanroom --version prints the version. Needs Node 24.12 or newer.',
    'Environment: CLEANROOM_API (default http://localhost:3000), CLEANROOM_HOME (default ~/.cleanroom);',
    'for attest, dataset upload and result get: TEE_SERVICE_ENDPOINT (default http://localhost:8080), CLEANROOM_WORKER_DIGESTS,',
    'CLEANROOM_ALLOW_INSECURE_DEV_ATTESTATION=1 (WARNING: accepts a dev attester that proves nothing).',
    '',
    'Exit codes:',
    ...EXIT_CODE_HELP.map(([code, text]) => `  ${code}  ${text}`),
  ];
  return `${lines.join('\n')}\n`;
}

/** `cleanroom <command> --help`. */
export function commandHelp(command: Command): string {
  const width = Math.max(...command.options.map(([flag]) => flag.length), '--help'.length);
  const examples = examplesOf(command.path);
  const lines = [
    `usage: ${command.usage}`,
    '',
    command.summary,
    '',
    'Options:',
    ...[...command.options, ['--help', 'show this help'] as const].map(([flag, text]) => `  ${flag.padEnd(width)}  ${text}`),
    ...(examples.length > 0 ? ['', 'Examples:', ...examples.map((line) => `  ${line}`)] : []),
  ];
  return `${lines.join('\n')}\n`;
}
