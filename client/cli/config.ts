import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { CliError } from './errors.ts';
import { EXIT } from './exit-codes.ts';

/** The CLI's settings, parsed once from the environment by the composition root. */
export interface CliConfig {
  /** The API's base URL without a trailing slash. */
  api: string;
  /** Where credentials live. */
  home: string;
  /** The worker's base URL without a trailing slash (`attest`). */
  worker: string;
  /** Image digests the worker may run, `sha256:<64 hex>`; empty when none were given. */
  workerDigests: string[];
  /** WARNING: accept the dev attester's tokens, which prove nothing. Local use only. */
  allowInsecureDevAttestation: boolean;
}

const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]']);

const DIGEST = /^sha256:[0-9a-f]{64}$/;

/**
 * Reads `CLEANROOM_API` (default `http://localhost:3000`) and `CLEANROOM_HOME` (default
 * `~/.cleanroom`). Plain http is refused for anything but loopback: bearer tokens would cross
 * the network in clear. For `attest`: `TEE_SERVICE_ENDPOINT` (default `http://localhost:8080`),
 * `CLEANROOM_WORKER_DIGESTS` (comma-separated) and `CLEANROOM_ALLOW_INSECURE_DEV_ATTESTATION=1`.
 */
export function loadCliConfig(env: Record<string, string | undefined>): CliConfig {
  const rawApi = env.CLEANROOM_API || 'http://localhost:3000';
  let url: URL;
  try {
    url = new URL(rawApi);
  } catch {
    throw invalid(`CLEANROOM_API is not a URL: ${rawApi}`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw invalid('CLEANROOM_API must be an http(s) URL');
  if (url.protocol === 'http:' && !LOOPBACK.has(url.hostname)) {
    throw invalid('CLEANROOM_API must use https unless it is a loopback address (tokens would travel in clear)');
  }
  if (url.username || url.password || url.search || url.hash) {
    throw invalid('CLEANROOM_API must not carry credentials, a query or a fragment');
  }
  const home = env.CLEANROOM_HOME ? resolve(env.CLEANROOM_HOME) : join(homedir(), '.cleanroom');
  const worker = workerUrl(env.TEE_SERVICE_ENDPOINT || 'http://localhost:8080');
  if (typeof worker !== 'string') throw invalid(`TEE_SERVICE_ENDPOINT ${worker.problem}`);
  const workerDigests = (env.CLEANROOM_WORKER_DIGESTS ?? '')
    .split(',')
    .map((d) => d.trim())
    .filter((d) => d !== '');
  if (!workerDigests.every(isImageDigest)) throw invalid('CLEANROOM_WORKER_DIGESTS must be a comma-separated list of sha256:<64 hex>');
  const insecure = env.CLEANROOM_ALLOW_INSECURE_DEV_ATTESTATION ?? '';
  if (!['', '0', '1'].includes(insecure)) throw invalid('CLEANROOM_ALLOW_INSECURE_DEV_ATTESTATION must be 1 or 0');
  return { api: url.href.replace(/\/+$/, ''), home, worker, workerDigests, allowInsecureDevAttestation: insecure === '1' };
}

/**
 * A worker base URL without a trailing slash, or what is wrong with it. No bearer token goes to
 * the worker and its answers are verified by attestation, so plain http is not refused here.
 */
export function workerUrl(raw: string): string | { problem: string } {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { problem: `is not a URL: ${raw}` };
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return { problem: 'must be an http(s) URL' };
  if (url.username || url.password || url.search || url.hash) return { problem: 'must not carry credentials, a query or a fragment' };
  return url.href.replace(/\/+$/, '');
}

/** A container image digest as attestation tokens name it. */
export function isImageDigest(value: string): boolean {
  return DIGEST.test(value);
}

function invalid(message: string): CliError {
  return new CliError('CONFIG_INVALID', message, { exitCode: EXIT.usage });
}
