import { createHash } from 'node:crypto';
import * as v from 'valibot';
import type { SignedUpload, UploadSigner } from './port.ts';
import { HOST, STORAGE, checkBucket, checkKey, failure, lazyAuth, readJson, rfc3986, unavailable, type GcsSigningAuth, type Lazy } from './gcs-common.ts';

// Create-only V4 signed upload URLs for Cloud Storage, signed through google-auth-library.

const SEVEN_DAYS = 7 * 24 * 3600;

export interface GcsUploadSignerOptions {
  bucket: string;
  /** Defaults to `GoogleAuth` with application default credentials, loaded on first use. */
  auth?: GcsSigningAuth;
  /**
   * Sign as this service account through IAM `signBlob` (the caller needs
   * `iam.serviceAccounts.signBlob` on it). Without it the credentials' own account signs, with
   * its private key when it has one and through `signBlob` otherwise (Cloud Run, GCE).
   */
  serviceAccountEmail?: string;
  fetch?: typeof fetch;
  now?: () => Date;
}

/**
 * Create-only upload URLs for Cloud Storage: V4 signed (`GOOG4-RSA-SHA256`) PUT URLs, expiring in
 * at most 7 days, with `host` and `x-goog-if-generation-match: 0` as signed headers, so the
 * object can be written once and a second PUT gets 412. A PUT URL cannot cap the size: the
 * registration checks the stored size against the ticket.
 */
export class GcsUploadSigner implements UploadSigner {
  readonly #bucket: string;
  readonly #auth: Lazy<GcsSigningAuth>;
  readonly #serviceAccountEmail: string | undefined;
  readonly #fetch: typeof fetch;
  readonly #now: () => Date;

  constructor(options: GcsUploadSignerOptions) {
    this.#bucket = checkBucket(options.bucket);
    this.#auth = lazyAuth(options.auth);
    this.#serviceAccountEmail = options.serviceAccountEmail;
    this.#fetch = options.fetch ?? globalThis.fetch;
    this.#now = options.now ?? (() => new Date());
  }

  async signUpload(key: string, options: { expiresInSeconds: number; maxBytes: number }): Promise<SignedUpload> {
    checkKey(key);
    const { expiresInSeconds } = options;
    if (!Number.isInteger(expiresInSeconds) || expiresInSeconds < 1 || expiresInSeconds > SEVEN_DAYS) {
      throw new TypeError(`expiresInSeconds must be 1 to ${SEVEN_DAYS}`);
    }
    const auth = await this.#auth();
    let email = this.#serviceAccountEmail;
    if (email === undefined) {
      try {
        email = (await auth.getCredentials()).client_email ?? undefined;
      } catch (error) {
        throw unavailable('no credentials to sign with', error);
      }
      if (!email) throw new TypeError('the credentials name no service account: set serviceAccountEmail');
    }
    const now = this.#now();
    const headers = { 'x-goog-if-generation-match': '0' };
    const parts = v4SigningParts({ bucket: this.#bucket, key, method: 'PUT', email, now, expiresInSeconds, headers });
    const signature = this.#serviceAccountEmail === undefined ? await signWith(auth, parts.stringToSign) : await this.#signBlob(auth, email, parts.stringToSign);
    return {
      url: `${parts.url}&X-Goog-Signature=${Buffer.from(signature, 'base64').toString('hex')}`,
      method: 'PUT',
      headers,
      expiresAt: new Date(Math.floor(now.getTime() / 1000) * 1000 + expiresInSeconds * 1000),
    };
  }

  async #signBlob(auth: GcsSigningAuth, email: string, data: string): Promise<string> {
    const url = `https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/${encodeURIComponent(email)}:signBlob`;
    let response: Response;
    try {
      const headers = new Headers(await auth.getRequestHeaders(url));
      headers.set('content-type', 'application/json');
      response = await this.#fetch(url, {
        method: 'POST',
        headers,
        body: JSON.stringify({ payload: Buffer.from(data).toString('base64') }),
        signal: AbortSignal.timeout(30_000),
      });
    } catch (error) {
      throw unavailable('IAM signBlob is unreachable', error);
    }
    if (!response.ok) throw await failure(response, 'sign the upload URL');
    return (await readJson(response, v.object({ signedBlob: v.pipe(v.string(), v.base64()) }))).signedBlob;
  }
}

/** The inputs of a V4 signature, in the order Cloud Storage rebuilds them. */
export interface V4SigningInput {
  bucket: string;
  key: string;
  method: 'GET' | 'PUT';
  /** The signing service account: the `X-Goog-Credential` prefix. */
  email: string;
  now: Date;
  expiresInSeconds: number;
  /** Extension headers to sign (lowercase `x-goog-*`); `host` is always added. */
  headers: Record<string, string>;
}

/**
 * The V4 canonical request, the string to sign, and the URL without `X-Goog-Signature`
 * (Cloud Storage "V4 signing process"): path-style `https://storage.googleapis.com/<bucket>/<key>`,
 * credential scope `<yyyymmdd>/auto/storage/goog4_request`, payload `UNSIGNED-PAYLOAD`.
 */
export function v4SigningParts(input: V4SigningInput): { canonicalRequest: string; stringToSign: string; url: string } {
  const iso = input.now
    .toISOString()
    .replace(/\.\d{3}Z$/, 'Z')
    .replace(/[-:]/g, '');
  const scope = `${iso.slice(0, 8)}/auto/storage/goog4_request`;
  const headers = Object.entries({ ...input.headers, host: HOST })
    .map(([name, value]) => [name.toLowerCase(), value.trim().replace(/\s+/g, ' ')] as const)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const signedHeaders = headers.map(([name]) => name).join(';');
  const query = Object.entries({
    'X-Goog-Algorithm': 'GOOG4-RSA-SHA256',
    'X-Goog-Credential': `${input.email}/${scope}`,
    'X-Goog-Date': iso,
    'X-Goog-Expires': String(input.expiresInSeconds),
    'X-Goog-SignedHeaders': signedHeaders,
  })
    .map(([name, value]) => `${rfc3986(name)}=${rfc3986(value)}`)
    .sort()
    .join('&');
  const path = `/${input.bucket}/${input.key.split('/').map(rfc3986).join('/')}`;
  const canonicalRequest = [input.method, path, query, headers.map(([name, value]) => `${name}:${value}\n`).join(''), signedHeaders, 'UNSIGNED-PAYLOAD'].join('\n');
  const stringToSign = ['GOOG4-RSA-SHA256', iso, scope, createHash('sha256').update(canonicalRequest).digest('hex')].join('\n');
  return { canonicalRequest, stringToSign, url: `${STORAGE}${path}?${query}` };
}

async function signWith(auth: GcsSigningAuth, data: string): Promise<string> {
  try {
    return await auth.sign(data);
  } catch (error) {
    throw unavailable('the upload URL could not be signed', error);
  }
}
