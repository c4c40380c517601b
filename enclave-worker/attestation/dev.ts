import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, SignJWT, type CryptoKey, type JWK } from 'jose';
import { INSECURE_DEV_HWMODEL } from '../../protocol/attestation.ts';
import { assertTokenRequest, type Attester, type TokenRequest } from './port.ts';

/** Where the worker serves the dev issuer, under its own origin: `${origin}${DEV_ISSUER_PATH}`. */
export const DEV_ISSUER_PATH = '/dev-attestation';

/** Options of {@link DevAttester.create}. */
export interface DevAttesterOptions {
  /** The `iss` of every token, e.g. `http://127.0.0.1:8080/dev-attestation`; discovery lives under it. */
  issuer: string;
  /** The digest the dev worker claims to run as (`sha256:<64 hex>`); verifiers still check it. */
  imageDigest: string;
  /**
   * Optional private-key file (JWK, mode 0600), created if absent, so tokens and cached JWKS stay
   * valid across restarts. Without it a fresh key is made each start; verifiers then refetch the
   * JWKS on the unknown `kid`.
   */
  keyFile?: string;
  /** Token lifetime (default 3600 s, as Confidential Space). */
  ttlSeconds?: number;
  /** The `sub` claim (Confidential Space puts the VM's selfLink there). */
  subject?: string;
  /** Injected time. */
  now?: () => Date;
}

/** The OIDC discovery document a verifier reads at `${issuer}/.well-known/openid-configuration`. */
export interface DevOpenidConfiguration {
  issuer: string;
  jwks_uri: string;
  id_token_signing_alg_values_supported: string[];
  response_types_supported: string[];
  subject_types_supported: string[];
  claims_supported: string[];
}

/**
 * The embedded stack's attester: tokens with the Confidential Space claim shape, signed RS256 by
 * a local key, saying `hwmodel: INSECURE_DEV`, debug enabled, no secure boot and no support
 * attributes, so every verifier refuses them unless its caller opts in.
 * WARNING: it attests nothing; whoever holds the key can mint any token. Local use only.
 */
export class DevAttester implements Attester {
  readonly kind = 'insecure-dev';
  readonly issuer: string;
  readonly #imageDigest: string;
  readonly #privateKey: CryptoKey;
  readonly #publicJwk: JWK;
  readonly #ttl: number;
  readonly #subject: string;
  readonly #now: () => Date;

  private constructor(options: DevAttesterOptions, privateKey: CryptoKey, publicJwk: JWK) {
    this.issuer = options.issuer;
    this.#imageDigest = options.imageDigest;
    this.#privateKey = privateKey;
    this.#publicJwk = publicJwk;
    this.#ttl = options.ttlSeconds ?? 3600;
    this.#subject = options.subject ?? 'insecure-dev-worker';
    this.#now = options.now ?? (() => new Date());
  }

  /** Loads or generates the signing key (RS256, 2048 bits), then returns the attester. */
  static async create(options: DevAttesterOptions): Promise<DevAttester> {
    const issuer = new URL(options.issuer);
    // Verifiers compare `iss` as a string, so it must already be in canonical form.
    if (!/^https?:$/.test(issuer.protocol) || issuer.search || issuer.hash || issuer.href.replace(/\/$/, '') !== options.issuer) {
      throw new TypeError('DevAttester issuer must be a plain http(s) URL without a trailing slash');
    }
    if (!/^sha256:[0-9a-f]{64}$/.test(options.imageDigest)) throw new TypeError('DevAttester imageDigest must be sha256:<64 hex>');
    const privateJwk = options.keyFile ? await loadOrCreateKey(options.keyFile) : await exportJWK((await generateKeyPair('RS256', { extractable: true })).privateKey);
    const { kty, n, e } = privateJwk;
    const kid = await calculateJwkThumbprint({ kty: kty!, n: n!, e: e! }, 'sha256');
    const privateKey = (await importJWK(privateJwk, 'RS256')) as CryptoKey;
    return new DevAttester(options, privateKey, { kty, n, e, kid, alg: 'RS256', use: 'sig' });
  }

  async token(request: TokenRequest): Promise<string> {
    assertTokenRequest(request);
    const iat = Math.floor(this.#now().getTime() / 1000);
    const claims: Record<string, unknown> = {
      hwmodel: INSECURE_DEV_HWMODEL,
      swname: 'CONFIDENTIAL_SPACE',
      swversion: ['insecure-dev'],
      dbgstat: 'enabled',
      secboot: false,
      submods: { confidential_space: { support_attributes: [] }, container: { image_digest: this.#imageDigest } },
    };
    // As the launcher does: a string for one nonce, an array for several, absent for none.
    if (request.nonces.length === 1) claims.eat_nonce = request.nonces[0];
    else if (request.nonces.length > 1) claims.eat_nonce = [...request.nonces];
    return new SignJWT(claims)
      .setProtectedHeader({ alg: 'RS256', kid: this.#publicJwk.kid!, typ: 'JWT' })
      .setIssuer(this.issuer)
      .setAudience(request.audience)
      .setSubject(this.#subject)
      .setIssuedAt(iat)
      .setNotBefore(iat)
      .setExpirationTime(iat + this.#ttl)
      .sign(this.#privateKey);
  }

  /** The JWKS to serve at {@link routes}`.jwks`. */
  jwks(): { keys: JWK[] } {
    return { keys: [{ ...this.#publicJwk }] };
  }

  /** The discovery document to serve at {@link routes}`.openidConfiguration`. */
  openidConfiguration(): DevOpenidConfiguration {
    return {
      issuer: this.issuer,
      jwks_uri: `${this.issuer}/jwks`,
      id_token_signing_alg_values_supported: ['RS256'],
      response_types_supported: ['id_token'],
      subject_types_supported: ['public'],
      claims_supported: ['iss', 'sub', 'aud', 'iat', 'nbf', 'exp', 'eat_nonce', 'hwmodel', 'swname', 'dbgstat', 'secboot', 'submods'],
    };
  }

  /** The request paths (on the issuer's origin) the worker's HTTP server answers with the two documents. */
  get routes(): { openidConfiguration: string; jwks: string } {
    const base = new URL(this.issuer).pathname.replace(/\/$/, '');
    return { openidConfiguration: `${base}/.well-known/openid-configuration`, jwks: `${base}/jwks` };
  }
}

async function loadOrCreateKey(path: string): Promise<JWK> {
  try {
    const jwk = JSON.parse(readFileSync(path, 'utf8')) as JWK;
    if (jwk.kty !== 'RSA' || typeof jwk.d !== 'string') throw new TypeError(`${path} does not hold an RSA private JWK`);
    return jwk;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const jwk = await exportJWK((await generateKeyPair('RS256', { extractable: true })).privateKey);
  mkdirSync(dirname(path), { recursive: true });
  try {
    // `wx`: a worker starting at the same moment must not overwrite the other's key; use theirs.
    writeFileSync(path, JSON.stringify(jwk), { mode: 0o600, flag: 'wx' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return loadOrCreateKey(path);
    throw error;
  }
  chmodSync(path, 0o600);
  return jwk;
}
