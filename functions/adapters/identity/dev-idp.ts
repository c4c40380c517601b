import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, importJWK, SignJWT, type JWK, type CryptoKey } from 'jose';
import { jwkThumbprint } from '../../../protocol/key-binding.ts';

/** The fixed issuer of dev tokens, so tokens stay valid whatever host or port the API is reached on. */
export const DEV_ISSUER = 'urn:cleanroom:dev-idp';
/** The audience the embedded API accepts. */
export const DEV_AUDIENCE = 'cleanroom-local';

const KEY_FILE = 'dev-idp-key.json';

/**
 * The embedded stack's identity provider: issues ES256 ID tokens for any email asked for.
 * WARNING: it authenticates nobody. It exists only in local mode; the config refuses it in GCP mode.
 */
export class DevIdentityProvider {
  readonly #privateKey: CryptoKey;
  readonly #publicJwk: JWK;
  readonly #now: () => Date;

  private constructor(privateKey: CryptoKey, publicJwk: JWK, now: () => Date) {
    this.#privateKey = privateKey;
    this.#publicJwk = publicJwk;
    this.#now = now;
  }

  /** Loads the signing key from `dir`, or creates it (mode 0600) so tokens survive restarts. */
  static async load(dir: string, now: () => Date = () => new Date()): Promise<DevIdentityProvider> {
    const path = join(dir, KEY_FILE);
    let privateJwk: JWK;
    try {
      privateJwk = JSON.parse(readFileSync(path, 'utf8')) as JWK;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      const { privateKey } = await generateKeyPair('ES256', { extractable: true });
      privateJwk = await exportJWK(privateKey);
      mkdirSync(dir, { recursive: true });
      writeFileSync(path, JSON.stringify(privateJwk), { mode: 0o600 });
      chmodSync(path, 0o600);
    }
    const { d: _d, ...publicFields } = privateJwk;
    const kid = await jwkThumbprint(publicFields);
    const publicJwk: JWK = { ...publicFields, kid, alg: 'ES256', use: 'sig' };
    const privateKey = (await importJWK(privateJwk, 'ES256')) as CryptoKey;
    return new DevIdentityProvider(privateKey, publicJwk, now);
  }

  /** The JWKS document the API verifies against. */
  jwks(): { keys: JWK[] } {
    return { keys: [this.#publicJwk] };
  }

  /** An ID token for `email` (lowercased), optionally carrying a nonce. */
  async issue(email: string, options: { nonce?: string; ttlSeconds?: number } = {}): Promise<{ token: string; expires_at: string }> {
    const normalised = email.toLowerCase();
    const iat = Math.floor(this.#now().getTime() / 1000);
    const exp = iat + (options.ttlSeconds ?? 3600);
    const sub = `dev|${createHash('sha256').update(normalised).digest('base64url').slice(0, 22)}`;
    const claims: Record<string, unknown> = { email: normalised, email_verified: true };
    if (options.nonce !== undefined) claims.nonce = options.nonce;
    const token = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'ES256', kid: this.#publicJwk.kid!, typ: 'JWT' })
      .setIssuer(DEV_ISSUER)
      .setAudience(DEV_AUDIENCE)
      .setSubject(sub)
      .setIssuedAt(iat)
      .setExpirationTime(exp)
      .sign(this.#privateKey);
    return { token, expires_at: new Date(exp * 1000).toISOString() };
  }
}
