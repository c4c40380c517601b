import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { calculateJwkThumbprint, createLocalJWKSet, exportJWK, exportSPKI, generateKeyPair, importJWK, SignJWT, type CryptoKey, type JWK } from 'jose';
import { attestationNonce, CONFIDENTIAL_SPACE_ISSUER, IssuerKeyCache, verifyAttestation, type AttestationPolicy, type VerifyAttestationOptions } from '../../protocol/attestation.ts';
import { CleanroomError, type ErrorCode } from '../../protocol/errors.ts';

// Every key and token here is made at test time (STYLE.md "Tests").
const NOW = new Date('2030-01-01T00:00:00Z');
const now = Math.floor(NOW.getTime() / 1000);
const AUDIENCE = 'https://cleanroom.example/attestation';
const DEV_ISSUER = 'http://127.0.0.1:8080/dev-attestation';
const DIGEST = `sha256:${createHash('sha256').update('worker-image-v1').digest('hex')}`;
const OTHER_DIGEST = `sha256:${createHash('sha256').update('worker-image-v0').digest('hex')}`;

const b64url = (value: string | Uint8Array): string => Buffer.from(value).toString('base64url');
const callerNonce = (): string => randomBytes(24).toString('base64url');

async function rsaKey(kid: string): Promise<{ privateKey: CryptoKey; publicKey: CryptoKey; jwk: JWK }> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  return { privateKey, publicKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' } };
}

async function identity(): Promise<{ jwk: JWK; privateJwk: JWK; thumbprint: string }> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const { kty, crv, x, y } = await exportJWK(publicKey);
  const thumbprint = await calculateJwkThumbprint({ kty: kty!, crv: crv!, x: x!, y: y! });
  // Shaped as the worker presents it (enclave-worker/identity.ts): extra members included.
  return { jwk: { kty, crv, x, y, alg: 'ES256', use: 'sig', kid: thumbprint }, privateJwk: await exportJWK(privateKey), thumbprint };
}

const google = await rsaKey('google-1');
const impostor = await rsaKey('google-1'); // same kid, other key
const dev = await rsaKey('dev-1');
const worker = await identity();
const otherWorker = await identity();
const NONCE = callerNonce();
const BOUND = await attestationNonce(NONCE, worker.thumbprint);

const keys = createLocalJWKSet({ keys: [google.jwk] });
const devKeys = createLocalJWKSet({ keys: [dev.jwk] });

type Claims = Record<string, unknown> & {
  submods: { confidential_space: Record<string, unknown>; container: Record<string, unknown>; [other: string]: Record<string, unknown> };
};

/** A production-shaped claim set, as Confidential Space issues it. */
function prodClaims(): Claims {
  return {
    iss: CONFIDENTIAL_SPACE_ISSUER,
    aud: AUDIENCE,
    sub: 'https://www.googleapis.com/compute/v1/projects/p/zones/europe-west4-a/instances/worker-1',
    iat: now - 60,
    nbf: now - 60,
    exp: now + 3540,
    eat_nonce: BOUND,
    hwmodel: 'GCP_AMD_SEV',
    swname: 'CONFIDENTIAL_SPACE',
    swversion: ['240500'],
    oemid: 11129,
    dbgstat: 'disabled-since-boot',
    secboot: true,
    google_service_accounts: ['worker@p.iam.gserviceaccount.com'],
    submods: {
      confidential_space: { support_attributes: ['LATEST', 'STABLE', 'USABLE'] },
      container: { image_digest: DIGEST, image_reference: `europe-docker.pkg.dev/p/r/worker@${DIGEST}` },
      gce: { project_id: 'p', zone: 'europe-west4-a' },
    },
  };
}

/** A dev-attester-shaped claim set (same shape, insecure values). */
function devClaims(): Claims {
  return {
    ...prodClaims(),
    iss: DEV_ISSUER,
    hwmodel: 'INSECURE_DEV',
    dbgstat: 'enabled',
    secboot: false,
    submods: { confidential_space: { support_attributes: [] }, container: { image_digest: DIGEST } },
  };
}

function with_(base: () => Claims, change: (c: Claims) => void): Claims {
  const claims = base();
  change(claims);
  return claims;
}

function sign(claims: Record<string, unknown>, key: { privateKey: CryptoKey; jwk: JWK } = google, alg = 'RS256'): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg, kid: key.jwk.kid!, typ: 'JWT' }).sign(key.privateKey);
}

const policy: AttestationPolicy = { audience: AUDIENCE, allowedImageDigests: [DIGEST] };

function options(overrides: Partial<VerifyAttestationOptions> = {}): VerifyAttestationOptions {
  return { nonce: NONCE, identityJwk: worker.jwk, policy, keys, devKeys, currentDate: NOW, ...overrides };
}

async function refusal(promise: Promise<unknown>): Promise<ErrorCode | 'accepted'> {
  try {
    await promise;
    return 'accepted';
  } catch (error) {
    if (error instanceof CleanroomError) return error.code;
    throw error;
  }
}

// ---------- attestationNonce ----------

test('attestationNonce: 64 lowercase hex chars of SHA-256 over tag, caller nonce and thumbprint', async (t) => {
  t.regex(BOUND, /^[0-9a-f]{64}$/);
  const expected = createHash('sha256').update(`cleanroom-attestation/v1|${NONCE}|${worker.thumbprint}`).digest('hex');
  t.is(BOUND, expected);
  // Within the launcher's 10-74 byte nonce bound.
  t.true(new TextEncoder().encode(BOUND).byteLength <= 74);
});

test('attestationNonce: changes with the caller nonce and with the key', async (t) => {
  t.not(await attestationNonce(callerNonce(), worker.thumbprint), BOUND);
  t.not(await attestationNonce(NONCE, otherWorker.thumbprint), BOUND);
});

test('attestationNonce: malformed inputs are a TypeError', async (t) => {
  await t.throwsAsync(attestationNonce('short', worker.thumbprint), { instanceOf: TypeError });
  await t.throwsAsync(attestationNonce('has|a|pipe-in-it-xxxxxx', worker.thumbprint), { instanceOf: TypeError });
  await t.throwsAsync(attestationNonce(NONCE, 'not-a-thumbprint'), { instanceOf: TypeError });
});

// ---------- acceptance ----------

test('verifyAttestation: a valid production token is accepted', async (t) => {
  const result = await verifyAttestation(await sign(prodClaims()), options());
  t.false(result.insecureDev);
  t.is(result.identityThumbprint, worker.thumbprint);
  t.deepEqual(result.claims.eat_nonce, [BOUND]);
  t.is(result.claims.submods?.container?.image_digest, DIGEST);
});

const accepted: Array<[string, () => Claims, Partial<VerifyAttestationOptions>?]> = [
  ['eat_nonce as an array containing the bound nonce', () => with_(prodClaims, (c) => (c.eat_nonce = ['a'.repeat(20), BOUND]))],
  ['eat_nonce as a single string', () => with_(prodClaims, (c) => (c.eat_nonce = BOUND))],
  ['aud as an array containing the audience', () => with_(prodClaims, (c) => (c.aud = ['other', AUDIENCE]))],
  ['exp just past but within the skew', () => with_(prodClaims, (c) => (c.exp = now - 10))],
  ['a TDX hardware model', () => with_(prodClaims, (c) => (c.hwmodel = 'GCP_INTEL_TDX'))],
  ['a second allowed digest', () => with_(prodClaims, (c) => (c.submods.container.image_digest = OTHER_DIGEST)), { policy: { ...policy, allowedImageDigests: [DIGEST, OTHER_DIGEST] } }],
  ['the identity JWK without optional members', () => prodClaims(), { identityJwk: { kty: worker.jwk.kty, crv: worker.jwk.crv, x: worker.jwk.x, y: worker.jwk.y } }],
];
for (const [name, claims, overrides] of accepted) {
  test(`verifyAttestation: accepted: ${name}`, async (t) => {
    t.is(await refusal(verifyAttestation(await sign(claims()), options(overrides))), 'accepted');
  });
}

test('verifyAttestation: a dev token with opt-in and the dev issuer is accepted and flagged insecure', async (t) => {
  const result = await verifyAttestation(await sign(devClaims(), dev), options({ policy: { ...policy, allowInsecureDev: true, devIssuer: DEV_ISSUER } }));
  t.true(result.insecureDev);
});

// ---------- every forged variant, with its code ----------

const devOptIn = { policy: { ...policy, allowInsecureDev: true, devIssuer: DEV_ISSUER } };
const devKnown = { policy: { ...policy, devIssuer: DEV_ISSUER } };

async function noneToken(): Promise<string> {
  return `${b64url(JSON.stringify({ alg: 'none', typ: 'JWT' }))}.${b64url(JSON.stringify(prodClaims()))}.`;
}

async function hs256WithPublicKey(): Promise<string> {
  const secret = new TextEncoder().encode(await exportSPKI(google.publicKey));
  return new SignJWT(prodClaims()).setProtectedHeader({ alg: 'HS256', kid: 'google-1', typ: 'JWT' }).sign(secret);
}

async function tampered(): Promise<string> {
  const [header, , signature] = (await sign(with_(prodClaims, (c) => (c.hwmodel = 'GCP_SHIELDED_VM')))).split('.');
  return `${header}.${b64url(JSON.stringify(prodClaims()))}.${signature}`;
}

const forged: Array<{ name: string; token: () => Promise<string>; options?: Partial<VerifyAttestationOptions>; code: ErrorCode }> = [
  // Structure.
  { name: 'empty string', token: async () => '', code: 'ATTESTATION_MALFORMED' },
  { name: 'one segment', token: async () => 'abc', code: 'ATTESTATION_MALFORMED' },
  { name: 'two segments', token: async () => 'abc.def', code: 'ATTESTATION_MALFORMED' },
  { name: 'four segments', token: async () => `${await sign(prodClaims())}.x`, code: 'ATTESTATION_MALFORMED' },
  { name: 'non-base64url characters', token: async () => (await sign(prodClaims())).replace('.', '.+'), code: 'ATTESTATION_MALFORMED' },
  { name: 'header is not JSON', token: async () => `${b64url('nope')}.${b64url(JSON.stringify(prodClaims()))}.c2ln`, code: 'ATTESTATION_MALFORMED' },
  { name: 'payload is not JSON', token: async () => `${b64url(JSON.stringify({ alg: 'RS256' }))}.${b64url('nope')}.c2ln`, code: 'ATTESTATION_MALFORMED' },
  { name: 'payload is an array', token: async () => `${b64url(JSON.stringify({ alg: 'RS256' }))}.${b64url('[1]')}.c2ln`, code: 'ATTESTATION_MALFORMED' },
  { name: 'header with crit', token: async () => `${b64url(JSON.stringify({ alg: 'RS256', crit: ['b64'], b64: false }))}.${b64url(JSON.stringify(prodClaims()))}.c2ln`, code: 'ATTESTATION_MALFORMED' },
  { name: 'a 20 kB token', token: async () => `${'a'.repeat(20_000)}.b.c`, code: 'ATTESTATION_MALFORMED' },
  { name: 'exp as a string', token: () => sign(with_(prodClaims, (c) => (c.exp = String(now + 100)))), code: 'ATTESTATION_MALFORMED' },
  { name: 'no exp', token: () => sign(with_(prodClaims, (c) => delete c.exp)), code: 'ATTESTATION_MALFORMED' },
  { name: 'no iss', token: () => sign(with_(prodClaims, (c) => delete c.iss)), code: 'ATTESTATION_MALFORMED' },
  { name: 'secboot as the string "true"', token: () => sign(with_(prodClaims, (c) => (c.secboot = 'true'))), code: 'ATTESTATION_MALFORMED' },
  { name: 'seven nonces', token: () => sign(with_(prodClaims, (c) => (c.eat_nonce = [BOUND, 'b', 'c', 'd', 'e', 'f', 'g']))), code: 'ATTESTATION_MALFORMED' },
  // Signature.
  { name: 'signed by another key with the same kid', token: () => sign(prodClaims(), impostor), code: 'ATTESTATION_SIGNATURE' },
  { name: 'signed by a key with an unknown kid', token: () => sign(prodClaims(), { ...impostor, jwk: { ...impostor.jwk, kid: 'unknown' } }), code: 'ATTESTATION_SIGNATURE' },
  { name: 'alg none', token: noneToken, code: 'ATTESTATION_SIGNATURE' },
  { name: 'HS256 with the public key as the secret', token: hs256WithPublicKey, code: 'ATTESTATION_SIGNATURE' },
  {
    name: 'PS256 by the right key (algorithm not pinned)',
    token: async () => sign(prodClaims(), { privateKey: (await importJWK(await exportJWK(google.privateKey), 'PS256')) as CryptoKey, jwk: google.jwk }, 'PS256'),
    code: 'ATTESTATION_SIGNATURE',
  },
  { name: 'tampered payload', token: tampered, code: 'ATTESTATION_SIGNATURE' },
  { name: 'stripped signature', token: async () => (await sign(prodClaims())).replace(/\.[^.]+$/, '.'), code: 'ATTESTATION_SIGNATURE' },
  {
    name: 'dev key claiming the Google issuer',
    token: () =>
      sign(
        with_(devClaims, (c) => (c.iss = CONFIDENTIAL_SPACE_ISSUER)),
        dev,
      ),
    options: devOptIn,
    code: 'ATTESTATION_SIGNATURE',
  },
  { name: 'Google key claiming the dev issuer', token: () => sign(with_(prodClaims, (c) => (c.iss = DEV_ISSUER))), options: devOptIn, code: 'ATTESTATION_SIGNATURE' },
  { name: 'dev token to a verifier that knows no dev issuer', token: () => sign(devClaims(), dev), code: 'ATTESTATION_SIGNATURE' },
  // Issuer, audience, age.
  { name: 'another issuer', token: () => sign(with_(prodClaims, (c) => (c.iss = 'https://evil.example'))), code: 'ATTESTATION_ISSUER' },
  { name: 'issuer with a trailing slash', token: () => sign(with_(prodClaims, (c) => (c.iss = `${CONFIDENTIAL_SPACE_ISSUER}/`))), code: 'ATTESTATION_ISSUER' },
  { name: 'another audience', token: () => sign(with_(prodClaims, (c) => (c.aud = 'https://sts.googleapis.com'))), code: 'ATTESTATION_AUDIENCE' },
  { name: 'expired', token: () => sign(with_(prodClaims, (c) => (c.exp = now - 31))), code: 'ATTESTATION_EXPIRED' },
  { name: 'iat in the future', token: () => sign(with_(prodClaims, (c) => ((c.iat = now + 600), (c.exp = now + 4200)))), code: 'ATTESTATION_EXPIRED' },
  { name: 'nbf in the future', token: () => sign(with_(prodClaims, (c) => (c.nbf = now + 600))), code: 'ATTESTATION_EXPIRED' },
  { name: 'exp before iat', token: () => sign(with_(prodClaims, (c) => ((c.iat = now), (c.exp = now - 1)))), code: 'ATTESTATION_EXPIRED' },
  // Dev tokens.
  { name: 'dev token without opt-in', token: () => sign(devClaims(), dev), options: devKnown, code: 'ATTESTATION_INSECURE_DEV' },
  { name: 'Google-signed INSECURE_DEV hwmodel without opt-in', token: () => sign(with_(prodClaims, (c) => (c.hwmodel = 'INSECURE_DEV'))), code: 'ATTESTATION_INSECURE_DEV' },
  { name: 'Google-signed INSECURE_DEV hwmodel with opt-in (not relaxed)', token: () => sign(with_(prodClaims, (c) => (c.hwmodel = 'INSECURE_DEV'))), options: devOptIn, code: 'ATTESTATION_HWMODEL' },
  {
    name: 'dev token posing as SEV hardware',
    token: () =>
      sign(
        with_(devClaims, (c) => (c.hwmodel = 'GCP_AMD_SEV')),
        dev,
      ),
    options: devOptIn,
    code: 'ATTESTATION_HWMODEL',
  },
  {
    name: 'dev token with opt-in, wrong swname',
    token: () =>
      sign(
        with_(devClaims, (c) => (c.swname = 'GCE')),
        dev,
      ),
    options: devOptIn,
    code: 'ATTESTATION_SWNAME',
  },
  {
    name: 'dev token with opt-in, digest not allowed',
    token: () =>
      sign(
        with_(devClaims, (c) => (c.submods.container.image_digest = OTHER_DIGEST)),
        dev,
      ),
    options: devOptIn,
    code: 'ATTESTATION_IMAGE_DIGEST',
  },
  { name: 'dev token with opt-in, another caller nonce', token: () => sign(devClaims(), dev), options: { ...devOptIn, nonce: callerNonce() }, code: 'ATTESTATION_NONCE' },
  {
    name: 'dev token with opt-in, audience wrong',
    token: () =>
      sign(
        with_(devClaims, (c) => (c.aud = 'other')),
        dev,
      ),
    options: devOptIn,
    code: 'ATTESTATION_AUDIENCE',
  },
  // Platform claims.
  { name: 'GCP_SHIELDED_VM', token: () => sign(with_(prodClaims, (c) => (c.hwmodel = 'GCP_SHIELDED_VM'))), code: 'ATTESTATION_HWMODEL' },
  { name: 'no hwmodel', token: () => sign(with_(prodClaims, (c) => delete c.hwmodel)), code: 'ATTESTATION_HWMODEL' },
  { name: 'SEV when only TDX is allowed', token: () => sign(prodClaims()), options: { policy: { ...policy, allowedHwModels: ['GCP_INTEL_TDX'] } }, code: 'ATTESTATION_HWMODEL' },
  { name: 'swname GCE', token: () => sign(with_(prodClaims, (c) => (c.swname = 'GCE'))), code: 'ATTESTATION_SWNAME' },
  { name: 'no swname', token: () => sign(with_(prodClaims, (c) => delete c.swname)), code: 'ATTESTATION_SWNAME' },
  { name: 'dbgstat enabled', token: () => sign(with_(prodClaims, (c) => (c.dbgstat = 'enabled'))), code: 'ATTESTATION_DEBUG' },
  { name: 'dbgstat disabled (but not since boot)', token: () => sign(with_(prodClaims, (c) => (c.dbgstat = 'disabled'))), code: 'ATTESTATION_DEBUG' },
  { name: 'no dbgstat', token: () => sign(with_(prodClaims, (c) => delete c.dbgstat)), code: 'ATTESTATION_DEBUG' },
  { name: 'secboot false', token: () => sign(with_(prodClaims, (c) => (c.secboot = false))), code: 'ATTESTATION_SECBOOT' },
  { name: 'secboot missing', token: () => sign(with_(prodClaims, (c) => delete c.secboot)), code: 'ATTESTATION_SECBOOT' },
  { name: 'no STABLE support attribute', token: () => sign(with_(prodClaims, (c) => (c.submods.confidential_space.support_attributes = ['LATEST', 'USABLE']))), code: 'ATTESTATION_SUPPORT' },
  { name: 'empty support attributes (debug image)', token: () => sign(with_(prodClaims, (c) => (c.submods.confidential_space.support_attributes = []))), code: 'ATTESTATION_SUPPORT' },
  { name: 'no submods', token: () => sign(with_(prodClaims, (c) => delete (c as Record<string, unknown>).submods)), code: 'ATTESTATION_SUPPORT' },
  // Code identity.
  { name: 'digest not on the allow-list', token: () => sign(with_(prodClaims, (c) => (c.submods.container.image_digest = OTHER_DIGEST))), code: 'ATTESTATION_IMAGE_DIGEST' },
  { name: 'empty allow-list', token: () => sign(prodClaims()), options: { policy: { ...policy, allowedImageDigests: [] } }, code: 'ATTESTATION_IMAGE_DIGEST' },
  { name: 'no image digest', token: () => sign(with_(prodClaims, (c) => delete c.submods.container.image_digest)), code: 'ATTESTATION_IMAGE_DIGEST' },
  {
    name: 'uppercase digest',
    token: () => sign(with_(prodClaims, (c) => (c.submods.container.image_digest = DIGEST.toUpperCase()))),
    options: { policy: { ...policy, allowedImageDigests: [DIGEST, DIGEST.toUpperCase()] } },
    code: 'ATTESTATION_IMAGE_DIGEST',
  },
  // Key binding and nonce.
  { name: 'identity JWK with a private part', token: () => sign(prodClaims()), options: { identityJwk: worker.privateJwk }, code: 'ATTESTATION_KEY_BINDING' },
  { name: 'identity JWK missing', token: () => sign(prodClaims()), options: { identityJwk: undefined }, code: 'ATTESTATION_KEY_BINDING' },
  { name: 'identity JWK as a string', token: () => sign(prodClaims()), options: { identityJwk: JSON.stringify(worker.jwk) }, code: 'ATTESTATION_KEY_BINDING' },
  { name: 'identity JWK symmetric', token: () => sign(prodClaims()), options: { identityJwk: { kty: 'oct', k: 'c2VjcmV0c2VjcmV0' } }, code: 'ATTESTATION_KEY_BINDING' },
  { name: 'identity JWK point not on the curve', token: () => sign(prodClaims()), options: { identityJwk: { ...worker.jwk, y: worker.jwk.x } }, code: 'ATTESTATION_KEY_BINDING' },
  { name: 'identity JWK swapped for another valid key', token: () => sign(prodClaims()), options: { identityJwk: otherWorker.jwk }, code: 'ATTESTATION_NONCE' },
  { name: 'token bound to another caller nonce (replay)', token: () => sign(prodClaims()), options: { nonce: callerNonce() }, code: 'ATTESTATION_NONCE' },
  { name: 'the raw caller nonce instead of the bound one', token: () => sign(with_(prodClaims, (c) => (c.eat_nonce = NONCE))), code: 'ATTESTATION_NONCE' },
  { name: 'no eat_nonce', token: () => sign(with_(prodClaims, (c) => delete c.eat_nonce)), code: 'ATTESTATION_NONCE' },
];

for (const variant of forged) {
  test(`verifyAttestation: refused with ${variant.code}: ${variant.name}`, async (t) => {
    t.is(await refusal(verifyAttestation(await variant.token(), options(variant.options))), variant.code);
  });
}

test('verifyAttestation: a non-string token is malformed', async (t) => {
  t.is(await refusal(verifyAttestation(42 as unknown as string, options())), 'ATTESTATION_MALFORMED');
});

test('verifyAttestation: the refusal carries a short message and no token', async (t) => {
  const token = await sign(with_(prodClaims, (c) => (c.dbgstat = 'enabled')));
  const error = await t.throwsAsync(verifyAttestation(token, options()), { instanceOf: CleanroomError });
  t.is(error.status, 401);
  t.false(JSON.stringify(error.toBody()).includes(token.split('.')[1]!));
});

test('verifyAttestation: misuse of the options is a TypeError', async (t) => {
  const token = await sign(prodClaims());
  await t.throwsAsync(verifyAttestation(token, options({ policy: { ...policy, audience: '' } })), { instanceOf: TypeError });
  await t.throwsAsync(verifyAttestation(token, options({ policy: { ...policy, allowInsecureDev: true } })), { instanceOf: TypeError });
  await t.throwsAsync(verifyAttestation(token, options({ policy: { ...policy, allowedHwModels: ['INSECURE_DEV'] } })), { instanceOf: TypeError });
  await t.throwsAsync(verifyAttestation(token, options({ policy: { ...policy, devIssuer: CONFIDENTIAL_SPACE_ISSUER } })), { instanceOf: TypeError });
  await t.throwsAsync(verifyAttestation(token, options({ nonce: 'x' })), { instanceOf: TypeError });
});

// ---------- issuer discovery ----------

interface FakeIssuer {
  origin: string;
  counts: { discovery: number; jwks: number };
  close(): Promise<void>;
}

/** A local issuer: discovery and JWKS, each answer overridable, every request counted. */
async function fakeIssuer(
  issuer: (origin: string) => string,
  handle: (path: string, req: IncomingMessage, res: ServerResponse, origin: string) => boolean = () => false,
  jwksUri: (origin: string) => string = (origin) => `${origin}/keys`,
): Promise<FakeIssuer> {
  const counts = { discovery: 0, jwks: 0 };
  let origin = '';
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', origin).pathname;
    if (path.endsWith('/.well-known/openid-configuration')) counts.discovery += 1;
    if (path === '/keys') counts.jwks += 1;
    if (handle(path, req, res, origin)) return;
    res.setHeader('content-type', 'application/json');
    if (path.endsWith('/.well-known/openid-configuration')) res.end(JSON.stringify({ issuer: issuer(origin), jwks_uri: jwksUri(origin) }));
    else if (path === '/keys') res.end(JSON.stringify({ keys: [google.jwk, dev.jwk] }));
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    origin,
    counts,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** A fetch that sends Google's URLs to the local server, as DNS would send them to Google. */
function routedFetch(origin: string): typeof fetch {
  return (input, init) => {
    const url = new URL(typeof input === 'string' ? input : input instanceof URL ? input.href : input.url);
    return fetch(`${origin}${url.pathname}`, init);
  };
}

const GOOGLE_JWKS = 'https://www.googleapis.com/service_accounts/v1/metadata/jwk/signer@confidentialspace-sign.iam.gserviceaccount.com';

test('discovery: the Confidential Space issuer is discovered once, then cached', async (t) => {
  const server = await fakeIssuer(
    () => CONFIDENTIAL_SPACE_ISSUER,
    undefined,
    () => GOOGLE_JWKS,
  );
  t.teardown(() => server.close());
  const googleJwksPath = new URL(GOOGLE_JWKS).pathname;
  const fetchImpl: typeof fetch = (input, init) => {
    const url = new URL(String(input));
    // The JWKS lives on another Google host; route it to the same fake.
    return routedFetch(server.origin)(url.pathname === googleJwksPath ? `${server.origin}/keys` : url.href, init);
  };
  const keyCache = new IssuerKeyCache({ fetch: fetchImpl, timeoutMs: 2000 });
  for (let i = 0; i < 3; i++) {
    const nonce = callerNonce();
    const token = await sign(with_(prodClaims, (c) => (c.eat_nonce = BOUND)));
    t.is(await refusal(verifyAttestation(token, options({ keys: undefined, keyCache }))), 'accepted');
    t.is(await refusal(verifyAttestation(token, options({ keys: undefined, keyCache, nonce }))), 'ATTESTATION_NONCE');
  }
  t.deepEqual(server.counts, { discovery: 1, jwks: 1 });
});

test('discovery: a dev issuer over plain http, by real fetch, refused without opt-in and accepted with it', async (t) => {
  const server = await fakeIssuer((origin) => `${origin}/dev-attestation`);
  t.teardown(() => server.close());
  const devIssuer = `${server.origin}/dev-attestation`;
  const keyCache = new IssuerKeyCache({ timeoutMs: 2000 });
  const token = await sign(
    with_(devClaims, (c) => (c.iss = devIssuer)),
    dev,
  );
  const base = options({ keys: undefined, devKeys: undefined, keyCache });
  t.is(await refusal(verifyAttestation(token, { ...base, policy: { ...policy, devIssuer } })), 'ATTESTATION_INSECURE_DEV');
  const result = await verifyAttestation(token, { ...base, policy: { ...policy, devIssuer, allowInsecureDev: true } });
  t.true(result.insecureDev);
  t.deepEqual(server.counts, { discovery: 1, jwks: 1 });
});

test('discovery: without a cache each verification discovers again (through options.fetch)', async (t) => {
  const server = await fakeIssuer((origin) => `${origin}/dev-attestation`);
  t.teardown(() => server.close());
  const devIssuer = `${server.origin}/dev-attestation`;
  const token = await sign(
    with_(devClaims, (c) => (c.iss = devIssuer)),
    dev,
  );
  let calls = 0;
  const counting: typeof fetch = (input, init) => ((calls += 1), fetch(input, init));
  const opts = options({ devKeys: undefined, fetch: counting, timeoutMs: 2000, policy: { ...policy, devIssuer, allowInsecureDev: true } });
  await verifyAttestation(token, opts);
  await verifyAttestation(token, opts);
  t.is(calls, 4);
});

test('discovery: an unknown kid from a discovered JWKS is a signature failure', async (t) => {
  const server = await fakeIssuer((origin) => `${origin}/dev-attestation`);
  t.teardown(() => server.close());
  const devIssuer = `${server.origin}/dev-attestation`;
  const token = await sign(
    with_(devClaims, (c) => (c.iss = devIssuer)),
    { ...impostor, jwk: { ...impostor.jwk, kid: 'nobody' } },
  );
  const opts = options({ devKeys: undefined, keyCache: new IssuerKeyCache({ timeoutMs: 2000 }), policy: { ...policy, devIssuer, allowInsecureDev: true } });
  t.is(await refusal(verifyAttestation(token, opts)), 'ATTESTATION_SIGNATURE');
});

const brokenIssuers: Array<[string, (path: string, req: IncomingMessage, res: ServerResponse, origin: string) => boolean, ((origin: string) => string)?, ((origin: string) => string)?]> = [
  ['discovery answers 500', (path, _req, res) => path.endsWith('openid-configuration') && (res.writeHead(500).end('boom'), true)],
  ['discovery is not JSON', (path, _req, res) => path.endsWith('openid-configuration') && (res.end('<html>'), true)],
  ['discovery redirects', (path, _req, res, origin) => path.endsWith('openid-configuration') && (res.writeHead(302, { location: `${origin}/elsewhere` }).end(), true)],
  ['JWKS answers 500', (path, _req, res) => path === '/keys' && (res.writeHead(500).end(), true)],
  ['JWKS is not a key set', (path, _req, res) => path === '/keys' && (res.end('{"keys":"no"}'), true)],
  ['discovery names another issuer', () => false, () => 'http://127.0.0.1:1/other'],
];
for (const [name, handle, issuerOf] of brokenIssuers) {
  test(`discovery: ${name} → ATTESTATION_UNAVAILABLE`, async (t) => {
    const server = await fakeIssuer(issuerOf ?? ((origin) => `${origin}/dev-attestation`), handle);
    t.teardown(() => server.close());
    const devIssuer = `${server.origin}/dev-attestation`;
    const token = await sign(
      with_(devClaims, (c) => (c.iss = devIssuer)),
      dev,
    );
    const opts = options({ devKeys: undefined, keyCache: new IssuerKeyCache({ timeoutMs: 2000 }), policy: { ...policy, devIssuer, allowInsecureDev: true } });
    const error = await t.throwsAsync(verifyAttestation(token, opts), { instanceOf: CleanroomError });
    t.is(error.code, 'ATTESTATION_UNAVAILABLE');
    t.is(error.status, 503);
  });
}

test('discovery: an http jwks_uri for an https issuer is refused', async (t) => {
  const server = await fakeIssuer(() => CONFIDENTIAL_SPACE_ISSUER);
  t.teardown(() => server.close());
  const keyCache = new IssuerKeyCache({ fetch: routedFetch(server.origin), timeoutMs: 2000 });
  t.is(await refusal(verifyAttestation(await sign(prodClaims()), options({ keys: undefined, keyCache }))), 'ATTESTATION_UNAVAILABLE');
  t.is(server.counts.jwks, 0);
});

for (const hangOn of ['/.well-known/openid-configuration', '/keys']) {
  test(`discovery: a hung ${hangOn} is refused after the timeout, not waited on`, async (t) => {
    const server = await fakeIssuer(
      (origin) => `${origin}/dev-attestation`,
      (path) => path.endsWith(hangOn),
    );
    t.teardown(() => server.close());
    const devIssuer = `${server.origin}/dev-attestation`;
    const token = await sign(
      with_(devClaims, (c) => (c.iss = devIssuer)),
      dev,
    );
    const opts = options({ devKeys: undefined, keyCache: new IssuerKeyCache({ timeoutMs: 200 }), policy: { ...policy, devIssuer, allowInsecureDev: true } });
    const started = Date.now();
    t.is(await refusal(verifyAttestation(token, opts)), 'ATTESTATION_UNAVAILABLE');
    t.true(Date.now() - started < 2000);
  });
}

test('discovery: a failure is not cached; the next verification retries', async (t) => {
  let fail = true;
  const server = await fakeIssuer(
    (origin) => `${origin}/dev-attestation`,
    (path, _req, res) => path.endsWith('openid-configuration') && fail && (res.writeHead(503).end(), true),
  );
  t.teardown(() => server.close());
  const devIssuer = `${server.origin}/dev-attestation`;
  const token = await sign(
    with_(devClaims, (c) => (c.iss = devIssuer)),
    dev,
  );
  const opts = options({ devKeys: undefined, keyCache: new IssuerKeyCache({ timeoutMs: 2000 }), policy: { ...policy, devIssuer, allowInsecureDev: true } });
  t.is(await refusal(verifyAttestation(token, opts)), 'ATTESTATION_UNAVAILABLE');
  fail = false;
  t.is(await refusal(verifyAttestation(token, opts)), 'accepted');
  t.is(server.counts.discovery, 2);
});

test('discovery: a malformed or alg-none token never triggers a fetch', async (t) => {
  const server = await fakeIssuer(
    () => CONFIDENTIAL_SPACE_ISSUER,
    undefined,
    () => GOOGLE_JWKS,
  );
  t.teardown(() => server.close());
  const keyCache = new IssuerKeyCache({ fetch: routedFetch(server.origin), timeoutMs: 2000 });
  t.is(await refusal(verifyAttestation('a.b', options({ keys: undefined, keyCache }))), 'ATTESTATION_MALFORMED');
  t.is(await refusal(verifyAttestation(await noneToken(), options({ keys: undefined, keyCache }))), 'ATTESTATION_SIGNATURE');
  t.deepEqual(server.counts, { discovery: 0, jwks: 0 });
});

test('verifyAttestation: an invalid currentDate is a caller bug (TypeError), never a skipped age check', async (t) => {
  await t.throwsAsync(verifyAttestation('a.b.c', { nonce: 'n'.repeat(16), identityJwk: {}, policy: { audience: 'x', allowedImageDigests: [] }, currentDate: new Date(Number.NaN) }), {
    instanceOf: TypeError,
  });
});
