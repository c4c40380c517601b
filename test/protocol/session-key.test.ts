import test from 'ava';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { CompactSign, SignJWT, calculateJwkThumbprint, createLocalJWKSet, decodeProtectedHeader, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { attestationNonce, CONFIDENTIAL_SPACE_ISSUER, type AttestationPolicy } from '../../protocol/attestation.ts';
import { unwrapDataKey, wrapDataKey } from '../../protocol/data-key.ts';
import type { SessionKeyBundle } from '../../protocol/dataset.ts';
import { CleanroomError, type ErrorCode } from '../../protocol/errors.ts';
import { SESSION_KEY_CERT_TYP, certifySessionKey, verifySessionKeyBundle, type VerifySessionKeyBundleOptions } from '../../protocol/session-key.ts';

// Every key and token here is made at test time (STYLE.md "Tests"): a local RS256 key stands in
// for the Confidential Space issuer (`keys`) and another for the worker's dev attester (`devKeys`).
const NOW = new Date('2030-01-01T00:00:00Z');
const now = Math.floor(NOW.getTime() / 1000);
const AUDIENCE = 'cleanroom-clients';
const DEV_ISSUER = 'http://127.0.0.1:8080/dev-attestation';
const DIGEST = `sha256:${createHash('sha256').update('worker-image-v1').digest('hex')}`;
const SESSION_ID = 'session-1';

async function rsaIssuer(kid: string): Promise<{ privateKey: CryptoKey; jwk: JWK }> {
  const { privateKey, publicKey } = await generateKeyPair('RS256');
  return { privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' } };
}

/** A worker identity shaped as enclave-worker/identity.ts makes it. */
async function identity(): Promise<{ privateKey: CryptoKey; publicJwk: JWK; thumbprint: string }> {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const { kty, crv, x, y } = await exportJWK(publicKey);
  const thumbprint = await calculateJwkThumbprint({ kty, crv, x, y } as JWK);
  return { privateKey, publicJwk: { kty, crv, x, y, alg: 'ES256', use: 'sig', kid: thumbprint }, thumbprint };
}

async function sessionKey(): Promise<{ privateKey: CryptoKey; publicJwk: JWK; thumbprint: string }> {
  const { privateKey, publicKey } = await generateKeyPair('ECDH-ES+A256KW', { crv: 'P-256' });
  const { kty, crv, x, y } = await exportJWK(publicKey);
  return { privateKey, publicJwk: { kty, crv, x, y, alg: 'ECDH-ES+A256KW', use: 'enc' }, thumbprint: await calculateJwkThumbprint({ kty, crv, x, y } as JWK) };
}

const google = await rsaIssuer('google-1');
const dev = await rsaIssuer('dev-1');
const worker = await identity();
const otherWorker = await identity();
const key = await sessionKey();
const otherKey = await sessionKey();
const NONCE = randomBytes(24).toString('base64url');
const keys = createLocalJWKSet({ keys: [google.jwk] });
const devKeys = createLocalJWKSet({ keys: [dev.jwk] });
const policy: AttestationPolicy = { audience: AUDIENCE, allowedImageDigests: [DIGEST] };

/** A Confidential-Space-shaped token binding `nonce` and the identity thumbprint. */
async function attestation(options: { thumbprint?: string; nonce?: string; devToken?: boolean } = {}): Promise<string> {
  const bound = await attestationNonce(options.nonce ?? NONCE, options.thumbprint ?? worker.thumbprint);
  const claims = {
    iss: options.devToken ? DEV_ISSUER : CONFIDENTIAL_SPACE_ISSUER,
    aud: AUDIENCE,
    iat: now - 60,
    exp: now + 3540,
    eat_nonce: bound,
    hwmodel: options.devToken ? 'INSECURE_DEV' : 'GCP_AMD_SEV',
    swname: 'CONFIDENTIAL_SPACE',
    dbgstat: 'disabled-since-boot',
    secboot: true,
    submods: { confidential_space: { support_attributes: ['STABLE'] }, container: { image_digest: DIGEST } },
  };
  const issuer = options.devToken ? dev : google;
  return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: issuer.jwk.kid!, typ: 'JWT' }).sign(issuer.privateKey);
}

async function certificate(overrides: Partial<Parameters<typeof certifySessionKey>[0]> = {}): Promise<string> {
  return certifySessionKey({
    identityPrivateKey: worker.privateKey,
    identityThumbprint: worker.thumbprint,
    sessionId: SESSION_ID,
    epoch: 1,
    publicJwk: key.publicJwk,
    now: NOW,
    ...overrides,
  });
}

async function bundle(overrides: Partial<SessionKeyBundle> = {}): Promise<SessionKeyBundle> {
  return {
    session_id: SESSION_ID,
    epoch: 1,
    public_jwk: key.publicJwk as SessionKeyBundle['public_jwk'],
    thumbprint: key.thumbprint,
    certificate: await certificate(),
    identity_jwk: worker.publicJwk as SessionKeyBundle['identity_jwk'],
    attestation: await attestation(),
    attestation_kind: 'confidential-space',
    ...overrides,
  };
}

function options(overrides: Partial<VerifySessionKeyBundleOptions> = {}): VerifySessionKeyBundleOptions {
  return { sessionId: SESSION_ID, nonce: NONCE, policy, keys, devKeys, currentDate: NOW, ...overrides };
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

/** A certificate signed with `signer` over an arbitrary header and payload. */
async function rawCertificate(header: Record<string, unknown>, payload: Record<string, unknown>, signer: CryptoKey = worker.privateKey): Promise<string> {
  return new CompactSign(new TextEncoder().encode(JSON.stringify(payload))).setProtectedHeader(header as never).sign(signer);
}

const goodHeader = () => ({ alg: 'ES256', typ: SESSION_KEY_CERT_TYP, kid: worker.thumbprint });
const goodPayload = () => ({ session_id: SESSION_ID, epoch: 1, thumbprint: key.thumbprint, iat: now });

// ---------- certifySessionKey ----------

test('certifySessionKey: an ES256 JWS with the pinned header and the session, epoch, thumbprint and time', async (t) => {
  const jws = await certificate();
  t.deepEqual(decodeProtectedHeader(jws), goodHeader());
  const payload = JSON.parse(Buffer.from(jws.split('.')[1]!, 'base64url').toString('utf8'));
  t.deepEqual(payload, goodPayload());
});

test('certifySessionKey: misuse is a TypeError', async (t) => {
  await t.throwsAsync(certificate({ identityThumbprint: 'short' }), { instanceOf: TypeError });
  await t.throwsAsync(certificate({ epoch: 0 }), { instanceOf: TypeError });
  await t.throwsAsync(certificate({ sessionId: 'bad/id' }), { instanceOf: TypeError });
  await t.throwsAsync(certificate({ publicJwk: worker.publicJwk }), { instanceOf: TypeError });
});

// ---------- verifySessionKeyBundle: acceptance ----------

test('verifySessionKeyBundle: a genuine bundle yields the key with only its thumbprint members, alg and use', async (t) => {
  const verified = await verifySessionKeyBundle(await bundle({ public_jwk: { ...(key.publicJwk as SessionKeyBundle['public_jwk']), kid: 'label' } }), options());
  t.deepEqual(verified.publicJwk, { kty: 'EC', crv: 'P-256', x: key.publicJwk.x, y: key.publicJwk.y, alg: 'ECDH-ES+A256KW', use: 'enc' });
  t.is(verified.thumbprint, key.thumbprint);
  t.is(verified.attestation.identityThumbprint, worker.thumbprint);
  t.false(verified.attestation.insecureDev);
});

test('verifySessionKeyBundle: the verified key wraps a data key the session private key unwraps', async (t) => {
  const verified = await verifySessionKeyBundle(await bundle(), options());
  const dataKey = new Uint8Array(randomBytes(32));
  const datasetId = randomUUID();
  const jwe = await wrapDataKey({ key: dataKey, sessionPublicJwk: verified.publicJwk, sessionId: SESSION_ID, datasetId });
  t.deepEqual(await unwrapDataKey({ jwe, sessionPrivateKey: key.privateKey, sessionId: SESSION_ID, datasetId, sessionKeyThumbprint: verified.thumbprint }), dataKey);
});

test('verifySessionKeyBundle: a dev token is accepted only with the opt-in, and flagged', async (t) => {
  const devBundle = await bundle({ attestation: await attestation({ devToken: true }), attestation_kind: 'insecure-dev' });
  t.is(await refusal(verifySessionKeyBundle(devBundle, options({ policy: { ...policy, devIssuer: DEV_ISSUER } }))), 'ATTESTATION_INSECURE_DEV');
  const verified = await verifySessionKeyBundle(devBundle, options({ policy: { ...policy, devIssuer: DEV_ISSUER, allowInsecureDev: true } }));
  t.true(verified.attestation.insecureDev);
});

test('verifySessionKeyBundle: a later epoch certified for that epoch is accepted', async (t) => {
  const verified = await verifySessionKeyBundle(await bundle({ epoch: 3, certificate: await certificate({ epoch: 3 }) }), options());
  t.is(verified.thumbprint, key.thumbprint);
});

// ---------- refusals ----------

const refused: Array<{ name: string; bundle: () => Promise<unknown>; options?: Partial<VerifySessionKeyBundleOptions>; code: ErrorCode }> = [
  // Shape.
  { name: 'not an object', bundle: async () => 'bundle', code: 'SESSION_KEY_INVALID' },
  { name: 'an extra member', bundle: async () => ({ ...(await bundle()), extra: 1 }), code: 'SESSION_KEY_INVALID' },
  { name: 'a private session key', bundle: async () => ({ ...(await bundle()), public_jwk: { ...key.publicJwk, d: 'A'.repeat(43) } }), code: 'SESSION_KEY_INVALID' },
  { name: 'a signing key as session key', bundle: async () => bundle({ public_jwk: { ...key.publicJwk, alg: 'ES256' } as never }), code: 'SESSION_KEY_INVALID' },
  { name: 'epoch 0', bundle: async () => bundle({ epoch: 0 }), code: 'SESSION_KEY_INVALID' },
  // Attestation codes pass through.
  { name: 'another caller nonce', bundle: async () => bundle({ attestation: await attestation({ nonce: randomBytes(24).toString('base64url') }) }), code: 'ATTESTATION_NONCE' },
  { name: 'the caller expects another nonce', bundle: () => bundle(), options: { nonce: randomBytes(24).toString('base64url') }, code: 'ATTESTATION_NONCE' },
  {
    name: 'another identity key presented with the genuine token (and a certificate by it)',
    bundle: async () =>
      bundle({
        identity_jwk: otherWorker.publicJwk as never,
        certificate: await certificate({ identityPrivateKey: otherWorker.privateKey, identityThumbprint: otherWorker.thumbprint }),
      }),
    code: 'ATTESTATION_NONCE',
  },
  { name: 'a digest not on the allow-list', bundle: () => bundle(), options: { policy: { ...policy, allowedImageDigests: [`sha256:${'ab'.repeat(32)}`] } }, code: 'ATTESTATION_IMAGE_DIGEST' },
  { name: 'an expired attestation', bundle: () => bundle(), options: { currentDate: new Date(NOW.getTime() + 2 * 3600_000) }, code: 'ATTESTATION_EXPIRED' },
  // The certificate.
  { name: 'a certificate signed by another key', bundle: async () => bundle({ certificate: await rawCertificate(goodHeader(), goodPayload(), otherWorker.privateKey) }), code: 'SESSION_KEY_INVALID' },
  {
    name: 'a certificate naming another identity key',
    bundle: async () => bundle({ certificate: await certificate({ identityThumbprint: otherWorker.thumbprint }) }),
    code: 'SESSION_KEY_INVALID',
  },
  { name: 'a certificate for another session', bundle: async () => bundle({ certificate: await certificate({ sessionId: 'session-2' }) }), code: 'SESSION_KEY_INVALID' },
  {
    name: "a bundle and certificate for another session than the caller's",
    bundle: async () => bundle({ session_id: 'session-2', certificate: await certificate({ sessionId: 'session-2' }) }),
    code: 'SESSION_KEY_INVALID',
  },
  { name: 'a certificate for another epoch', bundle: async () => bundle({ epoch: 2 }), code: 'SESSION_KEY_INVALID' },
  {
    name: 'a certificate for another public key',
    bundle: async () => bundle({ public_jwk: otherKey.publicJwk as never, thumbprint: otherKey.thumbprint }),
    code: 'SESSION_KEY_INVALID',
  },
  { name: 'a bundle thumbprint that is not its key', bundle: async () => bundle({ thumbprint: otherKey.thumbprint }), code: 'SESSION_KEY_INVALID' },
  { name: 'a certificate with another typ', bundle: async () => bundle({ certificate: await rawCertificate({ ...goodHeader(), typ: 'JWT' }, goodPayload()) }), code: 'SESSION_KEY_INVALID' },
  {
    name: 'a certificate with an extra header member (jwk)',
    bundle: async () => bundle({ certificate: await rawCertificate({ ...goodHeader(), jwk: otherWorker.publicJwk }, goodPayload()) }),
    code: 'SESSION_KEY_INVALID',
  },
  {
    name: 'a certificate payload with an extra member',
    bundle: async () => bundle({ certificate: await rawCertificate(goodHeader(), { ...goodPayload(), extra: true }) }),
    code: 'SESSION_KEY_INVALID',
  },
  {
    name: 'a certificate with a swapped payload',
    bundle: async () => {
      const [header, , signature] = (await certificate()).split('.');
      const payload = Buffer.from(JSON.stringify({ ...goodPayload(), thumbprint: otherKey.thumbprint })).toString('base64url');
      return bundle({ public_jwk: otherKey.publicJwk as never, thumbprint: otherKey.thumbprint, certificate: `${header}.${payload}.${signature}` });
    },
    code: 'SESSION_KEY_INVALID',
  },
  {
    name: 'an unsigned certificate',
    bundle: async () =>
      bundle({
        certificate: `${Buffer.from(JSON.stringify({ alg: 'none', typ: SESSION_KEY_CERT_TYP, kid: worker.thumbprint })).toString('base64url')}.${Buffer.from(JSON.stringify(goodPayload())).toString('base64url')}.`,
      }),
    code: 'SESSION_KEY_INVALID',
  },
  { name: 'a certificate that is not a JWS', bundle: async () => bundle({ certificate: 'not a jws' }), code: 'SESSION_KEY_INVALID' },
];
for (const { name, bundle: make, options: overrides, code } of refused) {
  test(`verifySessionKeyBundle: ${name} is refused with ${code}`, async (t) => {
    t.is(await refusal(verifySessionKeyBundle((await make()) as SessionKeyBundle, options(overrides))), code);
  });
}
