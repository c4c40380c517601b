import test from 'ava';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { calculateJwkThumbprint, createLocalJWKSet, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, type JWK } from 'jose';
import { DEV_ISSUER_PATH, DevAttester } from '../../../enclave-worker/attestation/dev.ts';
import { attestationNonce, IssuerKeyCache, verifyAttestation, type VerifyAttestationOptions } from '../../../protocol/attestation.ts';
import { CleanroomError, type ErrorCode } from '../../../protocol/errors.ts';

const ISSUER = `http://127.0.0.1:8080${DEV_ISSUER_PATH}`;
const DIGEST = `sha256:${'de'.repeat(32)}`;
const AUDIENCE = 'cleanroom-clients';
const NOW = new Date('2031-06-01T12:00:00Z');
const CALLER_NONCE = 'ZGV2LWNhbGxlci1ub25jZS0wMDE';

const identityKey = await generateKeyPair('ES256');
const { kty, crv, x, y } = await exportJWK(identityKey.publicKey);
const identityJwk = { kty, crv, x, y } as JWK;
const BOUND = await attestationNonce(CALLER_NONCE, await calculateJwkThumbprint(identityJwk));

const attester = await DevAttester.create({ issuer: ISSUER, imageDigest: DIGEST, now: () => NOW });
const devKeys = createLocalJWKSet(attester.jwks());
// A stand-in for Google's keys: anything but the dev key.
const googleKeys = createLocalJWKSet({ keys: [{ ...(await exportJWK((await generateKeyPair('RS256')).publicKey)), kid: 'g1' }] });

function options(overrides: Partial<VerifyAttestationOptions> = {}): VerifyAttestationOptions {
  return {
    nonce: CALLER_NONCE,
    identityJwk,
    policy: { audience: AUDIENCE, allowedImageDigests: [DIGEST], devIssuer: ISSUER, allowInsecureDev: true },
    keys: googleKeys,
    devKeys,
    currentDate: NOW,
    ...overrides,
  };
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

test('dev: tokens have the Confidential Space claim shape with insecure values', async (t) => {
  t.is(attester.kind, 'insecure-dev');
  const token = await attester.token({ audience: AUDIENCE, nonces: [BOUND] });
  const header = decodeProtectedHeader(token);
  t.is(header.alg, 'RS256');
  t.is(header.kid, attester.jwks().keys[0]!.kid);
  const claims = decodeJwt(token);
  t.like(claims, {
    iss: ISSUER,
    aud: AUDIENCE,
    iat: NOW.getTime() / 1000,
    exp: NOW.getTime() / 1000 + 3600,
    eat_nonce: BOUND,
    hwmodel: 'INSECURE_DEV',
    swname: 'CONFIDENTIAL_SPACE',
    dbgstat: 'enabled',
    secboot: false,
    submods: { confidential_space: { support_attributes: [] }, container: { image_digest: DIGEST } },
  });
  t.is(typeof claims.sub, 'string');
});

test('dev: eat_nonce is a string for one nonce, an array for several, absent for none (as the launcher)', async (t) => {
  const two = decodeJwt(await attester.token({ audience: AUDIENCE, nonces: [BOUND, 'x'.repeat(20)] }));
  t.deepEqual(two.eat_nonce, [BOUND, 'x'.repeat(20)]);
  const none = decodeJwt(await attester.token({ audience: AUDIENCE, nonces: [] }));
  t.false('eat_nonce' in none);
});

test('dev: requests are held to the launcher limits', async (t) => {
  for (const request of [
    { audience: '', nonces: [BOUND] },
    { audience: AUDIENCE, nonces: ['short'] },
    { audience: AUDIENCE, nonces: Array.from({ length: 7 }, () => BOUND) },
  ]) {
    const error = await t.throwsAsync(attester.token(request), { instanceOf: CleanroomError });
    t.is(error.code, 'VALIDATION_FAILED');
  }
});

test('dev: the JWKS holds the public key only, under its thumbprint; discovery points at it', async (t) => {
  const [key] = attester.jwks().keys;
  t.is(key!.kty, 'RSA');
  t.false('d' in key!);
  t.is(key!.kid, await calculateJwkThumbprint({ kty: 'RSA', n: key!.n!, e: key!.e! }));
  t.like(attester.openidConfiguration(), { issuer: ISSUER, jwks_uri: `${ISSUER}/jwks`, id_token_signing_alg_values_supported: ['RS256'] });
  t.deepEqual(attester.routes, { openidConfiguration: '/dev-attestation/.well-known/openid-configuration', jwks: '/dev-attestation/jwks' });
  // Handing out the JWKS must not let a caller change the key.
  attester.jwks().keys[0]!.n = 'changed';
  t.not(attester.jwks().keys[0]!.n, 'changed');
});

test('dev: a dev token verifies only with allowInsecureDev and the dev issuer', async (t) => {
  const token = await attester.token({ audience: AUDIENCE, nonces: [BOUND] });
  const result = await verifyAttestation(token, options());
  t.true(result.insecureDev);
  t.is(await refusal(verifyAttestation(token, options({ policy: { audience: AUDIENCE, allowedImageDigests: [DIGEST], devIssuer: ISSUER } }))), 'ATTESTATION_INSECURE_DEV');
  // A verifier that knows no dev issuer checks it against Google's keys.
  t.is(await refusal(verifyAttestation(token, options({ policy: { audience: AUDIENCE, allowedImageDigests: [DIGEST] } }))), 'ATTESTATION_SIGNATURE');
});

test('dev: opting in still checks the digest, nonce, key binding and age', async (t) => {
  const token = await attester.token({ audience: AUDIENCE, nonces: [BOUND] });
  t.is(await refusal(verifyAttestation(token, options({ policy: { ...options().policy, allowedImageDigests: [`sha256:${'0'.repeat(64)}`] } }))), 'ATTESTATION_IMAGE_DIGEST');
  t.is(await refusal(verifyAttestation(token, options({ nonce: 'b3RoZXItY2FsbGVyLW5vbmNlLTAwMg' }))), 'ATTESTATION_NONCE');
  t.is(await refusal(verifyAttestation(token, options({ identityJwk: { ...identityJwk, d: 'x' } }))), 'ATTESTATION_KEY_BINDING');
  t.is(await refusal(verifyAttestation(token, options({ currentDate: new Date(NOW.getTime() + 3700_000) }))), 'ATTESTATION_EXPIRED');
  t.is(await refusal(verifyAttestation(token, options({ policy: { ...options().policy, audience: 'someone-else' } }))), 'ATTESTATION_AUDIENCE');
});

test('dev: served by node:http at its routes, the dev issuer is discovered and its token verified', async (t) => {
  let served: DevAttester | undefined;
  const server = createServer((req, res) => {
    const path = req.url ?? '';
    if (served && path === served.routes.openidConfiguration) res.setHeader('content-type', 'application/json').end(JSON.stringify(served.openidConfiguration()));
    else if (served && path === served.routes.jwks) res.setHeader('content-type', 'application/json').end(JSON.stringify(served.jwks()));
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}${DEV_ISSUER_PATH}`;
  served = await DevAttester.create({ issuer, imageDigest: DIGEST, now: () => NOW });
  const token = await served.token({ audience: AUDIENCE, nonces: [BOUND] });
  const result = await verifyAttestation(
    token,
    options({ devKeys: undefined, keyCache: new IssuerKeyCache({ timeoutMs: 2000 }), policy: { audience: AUDIENCE, allowedImageDigests: [DIGEST], devIssuer: issuer, allowInsecureDev: true } }),
  );
  t.true(result.insecureDev);
});

test('dev: with a key file the key survives restarts (mode 0600)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'dev-attester-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const keyFile = join(dir, 'nested', 'dev-attestation-key.json');
  const first = await DevAttester.create({ issuer: ISSUER, imageDigest: DIGEST, keyFile, now: () => NOW });
  t.is(statSync(keyFile).mode & 0o777, 0o600);
  t.is(JSON.parse(readFileSync(keyFile, 'utf8')).kty, 'RSA');
  const second = await DevAttester.create({ issuer: ISSUER, imageDigest: DIGEST, keyFile, now: () => NOW });
  t.deepEqual(second.jwks(), first.jwks());
  const token = await first.token({ audience: AUDIENCE, nonces: [BOUND] });
  t.is(await refusal(verifyAttestation(token, options({ devKeys: createLocalJWKSet(second.jwks()) }))), 'accepted');
  // Without a key file every start makes a new key.
  const fresh = await DevAttester.create({ issuer: ISSUER, imageDigest: DIGEST });
  t.notDeepEqual(fresh.jwks(), first.jwks());
});

test('dev: a key file that is not an RSA private JWK is refused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'dev-attester-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const keyFile = join(dir, 'key.json');
  writeFileSync(keyFile, JSON.stringify(await exportJWK((await generateKeyPair('ES256', { extractable: true })).privateKey)));
  await t.throwsAsync(DevAttester.create({ issuer: ISSUER, imageDigest: DIGEST, keyFile }), { instanceOf: TypeError });
});

test('dev: misconfiguration is a TypeError', async (t) => {
  for (const issuer of [`${ISSUER}/`, 'ftp://127.0.0.1/dev', `${ISSUER}?x=1`, 'HTTP://127.0.0.1:8080/dev-attestation', 'not a url']) {
    await t.throwsAsync(DevAttester.create({ issuer, imageDigest: DIGEST }), { instanceOf: TypeError }, issuer);
  }
  await t.throwsAsync(DevAttester.create({ issuer: ISSUER, imageDigest: 'sha256:abc' }), { instanceOf: TypeError });
});
