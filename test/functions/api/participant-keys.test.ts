import test from 'ava';
import { exportJWK, generateKeyPair } from 'jose';
import { jwkThumbprint, keyBindingNonce } from '../../../protocol/key-binding.ts';
import { testApi, type TestApi } from '../../helpers/api.ts';

const OWNER = 'owner@example.com';
const BOB = 'bob@example.com';

let api: TestApi;
test.before(async () => {
  api = await testApi();
});
test.after.always(() => api.close());

async function publicJwk(alg: 'ES256' | 'ECDH-ES') {
  const { publicKey } = await generateKeyPair(alg === 'ES256' ? 'ES256' : 'ECDH-ES', { crv: 'P-256', extractable: true });
  const { kty, crv, x, y } = await exportJWK(publicKey);
  return { kty: kty!, crv: crv!, x: x!, y: y! };
}

async function keyBody(email: string, overrides: Record<string, unknown> = {}) {
  const signing_jwk = { ...(await publicJwk('ES256')), alg: 'ES256', use: 'sig' };
  const encryption_jwk = { ...(await publicJwk('ECDH-ES')), alg: 'ECDH-ES+A256KW', use: 'enc' };
  const nonce = await keyBindingNonce(await jwkThumbprint(signing_jwk), await jwkThumbprint(encryption_jwk));
  return { signing_jwk, encryption_jwk, binding_token: await api.token(email, { nonce }), ...overrides };
}

async function session() {
  const res = await api.call('POST', '/api/tee/sessions', { as: OWNER, body: { name: 'keys', participant_emails: [BOB] } });
  return res.body.id as string;
}

test('keys: a participant registers keys bound by a token nonce; the view shows thumbprints only', async (t) => {
  const id = await session();
  const body = await keyBody(BOB);
  const res = await api.call('PUT', `/api/tee/sessions/${id}/participants/me/keys`, { as: BOB, body });
  t.is(res.status, 200);
  t.is(res.body.email, BOB);
  t.is(res.body.keys.signing_kid, await jwkThumbprint(body.signing_jwk));
  t.is(res.body.keys.encryption_kid, await jwkThumbprint(body.encryption_jwk));
  const view = await api.call('GET', `/api/tee/sessions/${id}`, { as: OWNER });
  const bob = view.body.participants.find((p: any) => p.email === BOB);
  t.deepEqual(Object.keys(bob.keys).sort(), ['encryption_kid', 'registered_at', 'signing_kid']);
  t.false(JSON.stringify(view.body).includes(body.binding_token));
  // The stored binding token is readable by co-participants (Firestore rules), so it must not
  // work as a bearer token.
  const replay = await api.call('GET', `/api/tee/sessions/${id}`, { token: body.binding_token });
  t.is(replay.status, 401);
  t.is(replay.body.error.code, 'UNAUTHENTICATED');
  const stored = await api.store.get(id);
  t.deepEqual(stored?.participants.find((p) => p.email === BOB)?.keys?.signing_jwk, body.signing_jwk);
  const audit = await api.call('GET', `/api/tee/sessions/${id}/audit`, { as: OWNER });
  t.is(audit.body.entries.at(-1).action, 'participant.keys_registered');
});

test('keys: refused without a matching binding, with private keys, invalid points, or by outsiders', async (t) => {
  const id = await session();
  const good = await keyBody(BOB);
  const otherNonce = await api.token(BOB, { nonce: 'not-the-binding' });
  const noNonce = await api.token(BOB);
  const aliceBinding = await keyBody(OWNER);
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  const privateJwk = await exportJWK(privateKey);
  const cases: Array<[string, unknown, number, string]> = [
    ['nonce for other keys', { ...good, binding_token: otherNonce }, 401, 'UNAUTHENTICATED'],
    ['no nonce', { ...good, binding_token: noNonce }, 401, 'UNAUTHENTICATED'],
    ["someone else's binding token", { ...aliceBinding }, 403, 'FORBIDDEN'],
    ['private key', { ...good, signing_jwk: { ...privateJwk } }, 400, 'VALIDATION_FAILED'],
    ['point not on the curve', { ...good, signing_jwk: { ...good.signing_jwk, y: good.encryption_jwk.x } }, 400, 'VALIDATION_FAILED'],
    ['wrong curve', { ...good, signing_jwk: { ...good.signing_jwk, crv: 'P-384' } }, 400, 'VALIDATION_FAILED'],
    ['wrong alg', { ...good, encryption_jwk: { ...good.encryption_jwk, alg: 'RSA-OAEP' } }, 400, 'VALIDATION_FAILED'],
    ['same key twice', { ...good, encryption_jwk: { ...good.signing_jwk, alg: 'ECDH-ES+A256KW', use: 'enc' } }, 400, 'VALIDATION_FAILED'],
    ['missing token', { signing_jwk: good.signing_jwk, encryption_jwk: good.encryption_jwk }, 400, 'VALIDATION_FAILED'],
  ];
  for (const [label, body, status, code] of cases) {
    const res = await api.call('PUT', `/api/tee/sessions/${id}/participants/me/keys`, { as: BOB, body });
    t.is(res.status, status, label);
    t.is(res.body.error.code, code, label);
  }
  const outsider = await api.call('PUT', `/api/tee/sessions/${id}/participants/me/keys`, { as: 'eve@example.com', body: await keyBody('eve@example.com') });
  t.is(outsider.status, 404);
  const view = await api.call('GET', `/api/tee/sessions/${id}`, { as: OWNER });
  t.true(view.body.participants.every((p: any) => p.keys === null));
});

test('keys: a closed session refuses registration with SESSION_CLOSED', async (t) => {
  const id = await session();
  await api.call('DELETE', `/api/tee/sessions/${id}`, { as: OWNER });
  const res = await api.call('PUT', `/api/tee/sessions/${id}/participants/me/keys`, { as: BOB, body: await keyBody(BOB) });
  t.is(res.status, 409);
  t.is(res.body.error.code, 'SESSION_CLOSED');
});
