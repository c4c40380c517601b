import { request as httpRequest } from 'node:http';
import { decodeJwt } from 'jose';
import { CleanroomError } from '../../protocol/errors.ts';
import { assertTokenRequest, type Attester, type TokenRequest } from './port.ts';

/** Where the Confidential Space launcher serves custom tokens (REFERENCE.md). */
export const LAUNCHER_SOCKET = '/run/container_launcher/teeserver.sock';

const MAX_REPLY_BYTES = 64 * 1024;
const RETRY_AFTER_SECONDS = 5;
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/** Options of {@link ConfidentialSpaceAttester}; all have production defaults. */
export interface ConfidentialSpaceAttesterOptions {
  /** Default {@link LAUNCHER_SOCKET}; tests point it at a fake launcher. */
  socketPath?: string;
  /** Whole-request timeout (default 10 s). */
  timeoutMs?: number;
  /** A cached token is replaced when fewer seconds than this remain (default 300). */
  refreshBeforeSeconds?: number;
  /** Bound on cached tokens (default 32); each differs only by audience and nonces. */
  maxCachedTokens?: number;
  /** Injected time. */
  now?: () => Date;
}

interface Cached {
  token: string;
  exp: number;
}

function unavailable(cause: unknown): CleanroomError {
  // The launcher's own words stay in `cause` (for the log), never in the message a caller sees.
  return new CleanroomError('ATTESTATION_UNAVAILABLE', 'the attestation token is unavailable', { cause, retryAfter: RETRY_AFTER_SECONDS });
}

/**
 * Asks the Confidential Space launcher for custom-audience tokens over its unix socket.
 * Each token binds its nonces, so a token is reused only for an identical (audience, nonces)
 * request, until fewer than `refreshBeforeSeconds` remain; concurrent identical requests share
 * one launcher call.
 */
export class ConfidentialSpaceAttester implements Attester {
  readonly kind = 'confidential-space';
  readonly #socketPath: string;
  readonly #timeoutMs: number;
  readonly #refreshBefore: number;
  readonly #maxCached: number;
  readonly #now: () => Date;
  readonly #cache = new Map<string, Cached>();
  readonly #inflight = new Map<string, Promise<string>>();

  constructor(options: ConfidentialSpaceAttesterOptions = {}) {
    this.#socketPath = options.socketPath ?? LAUNCHER_SOCKET;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#refreshBefore = options.refreshBeforeSeconds ?? 300;
    this.#maxCached = options.maxCachedTokens ?? 32;
    this.#now = options.now ?? (() => new Date());
  }

  async token(request: TokenRequest): Promise<string> {
    assertTokenRequest(request);
    const key = JSON.stringify([request.audience, request.nonces]);
    const cached = this.#cache.get(key);
    if (cached && cached.exp - this.#seconds() > this.#refreshBefore) return cached.token;
    let pending = this.#inflight.get(key);
    if (!pending) {
      pending = this.#fetch(key, request).finally(() => this.#inflight.delete(key));
      this.#inflight.set(key, pending);
    }
    return pending;
  }

  #seconds(): number {
    return Math.floor(this.#now().getTime() / 1000);
  }

  async #fetch(key: string, request: TokenRequest): Promise<string> {
    // Exactly these keys: the launcher answers 400 to unknown ones.
    const body = JSON.stringify({ audience: request.audience, nonces: request.nonces, token_type: 'OIDC' });
    let reply: { status: number; text: string };
    try {
      reply = await postToken(this.#socketPath, body, this.#timeoutMs);
    } catch (cause) {
      throw unavailable(cause);
    }
    if (reply.status !== 200) throw unavailable(new Error(`launcher answered HTTP ${reply.status}: ${reply.text.slice(0, 300)}`));
    // The JWT comes back as text/html; only its shape and `exp` are read here, clients verify it.
    const token = reply.text.trim();
    let exp: unknown;
    try {
      if (!COMPACT_JWS.test(token)) throw new Error('not a compact JWT');
      exp = decodeJwt(token).exp;
    } catch (cause) {
      throw unavailable(new Error('launcher reply is not a JWT', { cause }));
    }
    if (typeof exp !== 'number' || !Number.isSafeInteger(exp)) throw unavailable(new Error('launcher token has no exp'));
    this.#remember(key, { token, exp });
    return token;
  }

  #remember(key: string, entry: Cached): void {
    const now = this.#seconds();
    for (const [k, cached] of this.#cache) if (cached.exp <= now) this.#cache.delete(k);
    this.#cache.delete(key);
    this.#cache.set(key, entry);
    // Oldest first: a Map iterates in insertion order.
    while (this.#cache.size > this.#maxCached) this.#cache.delete(this.#cache.keys().next().value!);
  }
}

/** One POST over the unix socket; rejects on timeout, socket errors, an early close or an oversized reply. */
function postToken(socketPath: string, body: string, timeoutMs: number): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const finish = (error: Error | undefined, value?: { status: number; text: string }): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error) {
        req.destroy();
        reject(error);
      } else resolve(value!);
    };
    const req = httpRequest({
      socketPath,
      method: 'POST',
      path: '/v1/token',
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    });
    const timer = setTimeout(() => finish(new Error(`launcher did not answer within ${timeoutMs} ms`)), timeoutMs);
    req.on('error', (error) => finish(error));
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.byteLength;
        if (size > MAX_REPLY_BYTES) finish(new Error('launcher reply is too large'));
        else chunks.push(chunk);
      });
      res.on('end', () => finish(undefined, { status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', (error) => finish(error));
      res.on('close', () => finish(new Error('launcher closed the reply early')));
    });
    req.end(body);
  });
}
