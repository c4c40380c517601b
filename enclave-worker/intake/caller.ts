import { OAuth2Client } from 'google-auth-library';
import { createRemoteJWKSet, jwtVerify, type JWTVerifyGetKey } from 'jose';
import { CleanroomError } from '../../protocol/errors.ts';

/** Checks the `Authorization` header of a task request; throws `TASK_UNAUTHENTICATED`. */
export type CallerVerifier = (authorization: string | null) => Promise<{ email: string }>;

/** The local issuer (the control plane's dev identity provider). */
export const DEV_CALLER_ISSUER = 'urn:cleanroom:dev-idp';

/** The local caller check: the issuer's JWKS and the audience its tokens carry. */
export interface JwksCallerOptions {
  /** The expected `aud`: what the local queue's token source asks the issuer for. */
  audience: string;
  issuer?: string;
  /** The issuer's JWKS (the control plane's `/.well-known/jwks.json` locally). */
  jwksUrl?: URL;
  /** A key resolver instead of `jwksUrl` (tests). */
  keys?: JWTVerifyGetKey;
  currentDate?: () => Date;
}

/**
 * Verifies the caller's token against a JWKS: ES256 only, issuer, audience, expiry, then the
 * claims. Locally the issuer is the dev identity provider. WARNING: that issuer authenticates
 * nobody, so locally this check only keeps out callers that did not ask it for a token.
 */
export function jwksCallerVerifier(options: JwksCallerOptions): CallerVerifier {
  if (!options.keys && !options.jwksUrl) throw new TypeError('jwksCallerVerifier needs jwksUrl or keys');
  const keys = options.keys ?? createRemoteJWKSet(options.jwksUrl!, { timeoutDuration: 5000, cooldownDuration: 30_000 });
  return async (authorization) => {
    const token = bearerToken(authorization);
    let claims: Record<string, unknown>;
    try {
      ({ payload: claims } = await jwtVerify(token, keys, {
        algorithms: ['ES256'],
        issuer: options.issuer ?? DEV_CALLER_ISSUER,
        audience: options.audience,
        clockTolerance: 5,
        requiredClaims: ['exp', 'iat', 'sub'],
        ...(options.currentDate ? { currentDate: options.currentDate() } : {}),
      }));
    } catch (cause) {
      throw new CleanroomError('TASK_UNAUTHENTICATED', 'the caller token is not valid', { cause });
    }
    return callerFromClaims(claims);
  };
}

/** The GCP caller check: the audience Cloud Tasks was told to put in its OIDC token. */
export interface GoogleCallerOptions {
  /** The worker intake's URL: the audience Cloud Tasks puts in the token. Required. */
  audience: string;
  /** Injectable client (tests give one whose certs are generated at test time). */
  client?: OAuth2Client;
}

/**
 * Verifies the Google-signed OIDC token Cloud Tasks attaches for the control plane's service
 * account: signature, issuer, expiry and (always) the audience, then a verified email.
 */
export function googleCallerVerifier(options: GoogleCallerOptions): CallerVerifier {
  if (!options.audience) throw new TypeError('googleCallerVerifier needs an audience');
  const client = options.client ?? new OAuth2Client();
  return async (authorization) => {
    const token = bearerToken(authorization);
    let claims: Record<string, unknown> | undefined;
    try {
      // Left out, the audience would not be checked at all (REFERENCE.md).
      const ticket = await client.verifyIdToken({ idToken: token, audience: options.audience });
      claims = ticket.getPayload() as Record<string, unknown> | undefined;
    } catch (cause) {
      throw new CleanroomError('TASK_UNAUTHENTICATED', 'the caller token is not valid', { cause });
    }
    return callerFromClaims(claims ?? {});
  };
}

/**
 * The control plane, and only it: a valid caller token (`verify`) whose email is `expectedEmail`
 * (its service account; locally the dev IdP's control-plane identity). `TASK_UNAUTHENTICATED`
 * otherwise. Guards both `POST /tasks` and `POST /session-keys`.
 */
export async function authenticateControlPlane(verify: CallerVerifier, expectedEmail: string, authorization: string | null): Promise<void> {
  const caller = await verify(authorization);
  if (caller.email !== expectedEmail.toLowerCase()) throw new CleanroomError('TASK_UNAUTHENTICATED', 'the caller is not the control plane');
}

/** The token of a `Bearer` authorization header. */
export function bearerToken(authorization: string | null): string {
  const match = /^Bearer ([A-Za-z0-9._~+/=-]{1,8192})$/i.exec(authorization ?? '');
  if (!match) throw new CleanroomError('TASK_UNAUTHENTICATED', 'a bearer token is required');
  return match[1]!;
}

function callerFromClaims(claims: Record<string, unknown>): { email: string } {
  const { email, email_verified: verified, nonce } = claims;
  if (typeof email !== 'string' || email.length === 0 || email.length > 254) {
    throw new CleanroomError('TASK_UNAUTHENTICATED', 'the caller token has no email');
  }
  if (verified !== true) throw new CleanroomError('TASK_UNAUTHENTICATED', 'the caller email is not verified');
  // Key-binding tokens carry a nonce and are readable by co-participants: never a caller token.
  if (nonce !== undefined) throw new CleanroomError('TASK_UNAUTHENTICATED', 'the caller token carries a nonce');
  return { email: email.toLowerCase() };
}
