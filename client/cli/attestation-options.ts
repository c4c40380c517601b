import { CleanroomError } from '../../protocol/errors.ts';
import type { AttestationChoice } from '../sdk/attestation-policy.ts';
import type { CliContext, Command } from './command.ts';
import { isImageDigest } from './config.ts';
import { UsageError } from './errors.ts';

/** The options of every command that trusts the worker: which code it may run, and the dev opt-in. */
export const ATTESTATION_OPTIONS = {
  'expect-digest': { type: 'string', multiple: true },
  'allow-insecure-dev': { type: 'boolean' },
} as const;

/** Their `--help` lines. */
export const ATTESTATION_HELP: ReadonlyArray<readonly [string, string]> = [
  ['--expect-digest DIGEST', 'an allowed worker image digest; repeat for more (default: CLEANROOM_WORKER_DIGESTS)'],
  ['--allow-insecure-dev', 'WARNING: accept the dev attester, which proves nothing (also CLEANROOM_ALLOW_INSECURE_DEV_ATTESTATION=1)'],
];

/**
 * What the command accepts of the worker's attestation. The dev attester names itself under the
 * worker's URL (TEE_SERVICE_ENDPOINT). With the dev opt-in and no digest anywhere, the digest the
 * dev token claims is taken, as `cleanroom attest` does.
 */
export function attestationChoice(command: Pick<Command, 'usage'>, ctx: CliContext, values: { 'expect-digest'?: string[]; 'allow-insecure-dev'?: boolean }): AttestationChoice {
  const digests = values['expect-digest'] ?? ctx.config.workerDigests;
  if (!digests.every(isImageDigest)) throw new UsageError('--expect-digest must be sha256:<64 lowercase hex>', command.usage);
  const allowInsecureDev = values['allow-insecure-dev'] ?? ctx.config.allowInsecureDevAttestation;
  return {
    workerUrl: ctx.config.worker,
    allowedImageDigests: digests,
    allowInsecureDev,
    acceptDevClaimedDigest: allowInsecureDev && digests.length === 0,
  };
}

/** Adds how to fix a digest refusal when no digest was given; other errors pass unchanged. */
export function explainRefusal(error: unknown, choice: AttestationChoice): unknown {
  if (error instanceof CleanroomError && error.code === 'ATTESTATION_IMAGE_DIGEST' && choice.allowedImageDigests.length === 0) {
    return new CleanroomError(error.code, `${error.message} (none given: use --expect-digest or CLEANROOM_WORKER_DIGESTS)`, { cause: error });
  }
  if (error instanceof CleanroomError && error.code === 'ATTESTATION_INSECURE_DEV') {
    return new CleanroomError(error.code, `${error.message} (the worker runs the dev attester, which proves nothing: only for a local stack, pass --allow-insecure-dev)`, { cause: error });
  }
  return error;
}

/** Printed whenever a dev token was accepted, in every output mode, on stderr. */
export function insecureWarning(digestPinned: boolean): string {
  const lines = [
    'INSECURE DEV ATTESTATION: NOTHING IS ATTESTED',
    "The token comes from the worker's dev attester, not from a TEE: no confidential",
    'hardware, no secure boot, debugging enabled. Anyone can run a dev attester and mint',
    'such a token, so it proves nothing about the code or the machine.',
    ...(digestPinned ? [] : ['The image digest was not checked: it is whatever the worker claims.']),
    'Never send real data to this worker.',
  ];
  const width = Math.max(...lines.map((l) => l.length));
  const bar = '!'.repeat(width + 8);
  return `${[bar, ...lines.map((l) => `!!! ${l.padEnd(width)} !!!`), bar].join('\n')}\n`;
}
