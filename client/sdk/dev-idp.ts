import { CleanroomError } from '../../protocol/errors.ts';
import { TransportError } from './errors.ts';
import { DevTokenSchema } from './schemas.ts';
import { requestJson, type FetchLike } from './transport.ts';

/** A token from the embedded stack's dev identity provider. */
export interface DevToken {
  id_token: string;
  expires_at: string;
}

/**
 * Asks the embedded stack's dev identity provider for an ID token for `email`, carrying `nonce`
 * when given (a key-binding token; the API refuses such a token as a bearer token). Returns null
 * when the API has no such route (it is not a local stack: a deployed API never mounts it).
 */
export async function requestDevToken(options: { baseUrl: string; email: string; nonce?: string; fetch?: FetchLike; timeoutMs?: number }): Promise<DevToken | null> {
  try {
    const issued = await requestJson({
      fetch: options.fetch ?? ((input, init) => fetch(input, init)),
      baseUrl: options.baseUrl.replace(/\/+$/, ''),
      method: 'POST',
      path: '/dev-idp/token',
      body: { email: options.email, ...(options.nonce !== undefined ? { nonce: options.nonce } : {}) },
      timeoutMs: options.timeoutMs ?? 30_000,
      schema: DevTokenSchema,
    });
    return { id_token: issued.id_token, expires_at: issued.expires_at };
  } catch (error) {
    if (error instanceof CleanroomError && error.code === 'ROUTE_NOT_FOUND') return null;
    if (error instanceof TransportError && error.status === 404) return null;
    throw error;
  }
}
