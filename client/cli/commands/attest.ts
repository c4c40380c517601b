import { CleanroomError } from '../../../protocol/errors.ts';
import { attestWorker, DEFAULT_ATTESTATION_AUDIENCE, type AttestedWorker } from '../../sdk/attestation.ts';
import { insecureWarning } from '../attestation-options.ts';
import { JSON_OPTION, parseCommandArgs, type Command } from '../command.ts';
import { isImageDigest, workerUrl } from '../config.ts';
import { UsageError } from '../errors.ts';
import { printJson, safe } from '../output.ts';

/** `cleanroom attest`: is the worker at this URL the attested code we expect? */
export const attest: Command = {
  path: ['attest'],
  usage: 'cleanroom attest [--worker URL] [--expect-digest sha256:HEX ...] [--allow-insecure-dev] [--audience AUD] [--json]',
  summary: "Verify the worker's attestation with a fresh nonce: VERIFIED (exit 0) or REFUSED (exit 1)",
  options: [
    ['--worker URL', 'the worker (default: TEE_SERVICE_ENDPOINT, else http://localhost:8080)'],
    ['--expect-digest DIGEST', 'an allowed container image digest; repeat for more (default: CLEANROOM_WORKER_DIGESTS)'],
    ['--allow-insecure-dev', 'WARNING: accept the dev attester, which proves nothing (also CLEANROOM_ALLOW_INSECURE_DEV_ATTESTATION=1)'],
    ['--audience AUD', `the token audience to require (default ${DEFAULT_ATTESTATION_AUDIENCE})`],
    ['--json', 'print {verdict, code?, message?, claims?, insecure_dev} as JSON'],
  ],
  async run(ctx, argv) {
    const { values } = parseCommandArgs(this, argv, {
      ...JSON_OPTION,
      worker: { type: 'string' },
      'expect-digest': { type: 'string', multiple: true },
      'allow-insecure-dev': { type: 'boolean' },
      audience: { type: 'string' },
    });
    const worker = values.worker === undefined ? ctx.config.worker : workerUrl(values.worker);
    if (typeof worker !== 'string') throw new UsageError(`--worker ${worker.problem}`, this.usage);
    const digests = values['expect-digest'] ?? ctx.config.workerDigests;
    if (!digests.every(isImageDigest)) throw new UsageError('--expect-digest must be sha256:<64 lowercase hex>', this.usage);
    if (values.audience !== undefined && (values.audience.length === 0 || values.audience.length > 512)) {
      throw new UsageError('--audience must be 1-512 characters', this.usage);
    }
    const allowInsecureDev = values['allow-insecure-dev'] ?? ctx.config.allowInsecureDevAttestation;

    let attested: AttestedWorker;
    try {
      attested = await attestWorker({
        workerUrl: worker,
        allowedImageDigests: digests,
        allowInsecureDev,
        acceptDevClaimedDigest: allowInsecureDev && digests.length === 0,
        ...(values.audience !== undefined ? { audience: values.audience } : {}),
        fetch: ctx.fetch,
        currentDate: ctx.now(),
      });
    } catch (error) {
      if (!isRefusal(error)) throw error;
      const refusal =
        error.code === 'ATTESTATION_IMAGE_DIGEST' && digests.length === 0
          ? new CleanroomError(error.code, `${error.message} (none given: use --expect-digest or CLEANROOM_WORKER_DIGESTS)`, { cause: error })
          : error;
      if (values.json) printJson(ctx.io, { verdict: 'REFUSED', worker, code: refusal.code, message: refusal.message, insecure_dev: false });
      else ctx.io.stdout(`${row('verdict', `REFUSED (${refusal.code})`)}${row('worker', worker)}`);
      // main prints `error: CODE: message` on stderr and exits 1.
      throw refusal;
    }
    if (attested.insecureDev) ctx.io.stderr(insecureWarning(attested.digestPinned));
    if (values.json) printJson(ctx.io, toJson(attested));
    else ctx.io.stdout(formatAttested(attested));
  },
};

/** A refusal of the token itself; the worker's own errors and transport failures stay errors. */
function isRefusal(error: unknown): error is CleanroomError {
  return error instanceof CleanroomError && error.code.startsWith('ATTESTATION_');
}

function toJson(attested: AttestedWorker) {
  return {
    verdict: 'VERIFIED',
    worker: attested.workerUrl,
    instance_id: attested.instanceId,
    insecure_dev: attested.insecureDev,
    digest_pinned: attested.digestPinned,
    claims: {
      hwmodel: attested.claims.hwmodel ?? null,
      swname: attested.claims.swname ?? null,
      dbgstat: attested.claims.dbgstat ?? null,
      secboot: attested.claims.secboot ?? null,
      image_digest: attested.claims.submods?.container?.image_digest ?? null,
      issuer: attested.claims.iss,
      expires_at: attested.expiresAt,
      identity_thumbprint: attested.identityThumbprint,
    },
  };
}

function formatAttested(attested: AttestedWorker): string {
  const { claims } = attested;
  const digest = claims.submods?.container?.image_digest ?? '-';
  return [
    row('verdict', attested.insecureDev ? 'VERIFIED (INSECURE DEV: nothing is attested)' : 'VERIFIED'),
    row('worker', `${attested.workerUrl} (instance ${attested.instanceId})`),
    row('hwmodel', claims.hwmodel ?? '-'),
    row('swname', claims.swname ?? '-'),
    row('dbgstat', claims.dbgstat ?? '-'),
    row('secboot', claims.secboot === undefined ? '-' : String(claims.secboot)),
    row('image digest', attested.digestPinned ? digest : `${digest} (as claimed: not checked against any allow-list)`),
    row('issuer', claims.iss),
    row('expires', attested.expiresAt),
    row('identity key', attested.identityThumbprint),
  ].join('');
}

function row(label: string, value: string): string {
  return `${label.padEnd(19)}${safe(value)}\n`;
}
