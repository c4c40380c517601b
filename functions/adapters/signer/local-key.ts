import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { exportJWK, generateKeyPair, importJWK, type JWK } from 'jose';
import { jwkThumbprint } from '../../../protocol/key-binding.ts';
import type { TaskSigner } from '../../../protocol/task.ts';

/**
 * The embedded stack's task signing key: an ES256 private JWK in a file (mode 0600), created on
 * first use so tasks signed before a restart still verify after it. The GCP twin is `KmsSigner`.
 */
export class LocalKeySigner implements TaskSigner {
  readonly kid: string;
  readonly #privateKey: CryptoKey;
  readonly #publicJwk: JWK;

  private constructor(kid: string, privateKey: CryptoKey, publicJwk: JWK) {
    this.kid = kid;
    this.#privateKey = privateKey;
    this.#publicJwk = publicJwk;
  }

  /** Loads the key at `path`, or creates it (and its directory) when absent. */
  static async load(path: string): Promise<LocalKeySigner> {
    const privateJwk = (await readKey(path)) ?? (await createKey(path));
    if (privateJwk.kty !== 'EC' || privateJwk.crv !== 'P-256' || typeof privateJwk.d !== 'string') {
      throw new TypeError(`${path} does not hold an ES256 (P-256) private JWK`);
    }
    const { kty, crv, x, y } = privateJwk;
    const publicFields: JWK = { kty, crv, x, y };
    const kid = await jwkThumbprint(publicFields);
    const privateKey = (await importJWK({ kty, crv, x, y, d: privateJwk.d }, 'ES256')) as CryptoKey;
    return new LocalKeySigner(kid, privateKey, { ...publicFields, kid, alg: 'ES256', use: 'sig' });
  }

  /** The public key as the worker's key list holds it (`kid`, `alg`, `use` set). */
  publicJwk(): JWK {
    return { ...this.#publicJwk };
  }

  async sign(signingInput: Uint8Array): Promise<Uint8Array> {
    // WebCrypto's ECDSA output is already the fixed-width r||s that JWS wants.
    const signature = await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, this.#privateKey, signingInput as Uint8Array<ArrayBuffer>);
    return new Uint8Array(signature);
  }
}

async function readKey(path: string): Promise<JWK | null> {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as JWK;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

async function createKey(path: string): Promise<JWK> {
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = await exportJWK(privateKey);
  mkdirSync(dirname(path), { recursive: true });
  try {
    // `wx`: two processes starting together must not each write a different key.
    writeFileSync(path, JSON.stringify(jwk), { mode: 0o600, flag: 'wx' });
    return jwk;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    return JSON.parse(readFileSync(path, 'utf8')) as JWK;
  }
}
