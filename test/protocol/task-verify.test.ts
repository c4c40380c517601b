import test from 'ava';
import { createLocalJWKSet } from 'jose';
import { CleanroomError, type ErrorCode } from '../../protocol/errors.ts';
import { verifyTaskJws } from '../../protocol/task-verify.ts';
import { TASK_TYP, signedTask, taskPayload, testTaskKey } from '../helpers/task.ts';

const key = await testTaskKey();
const other = await testTaskKey();
const keys = [key.publicJwk];
const NOW = new Date('2030-01-01T00:00:00Z');
const nowSeconds = Math.floor(NOW.getTime() / 1000);

function b64(value: unknown): string {
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
}

test('verifyTaskJws: a task signed by the control plane key verifies and yields its payload', async (t) => {
  const payload = taskPayload({}, nowSeconds);
  t.deepEqual(await verifyTaskJws(await signedTask(key, payload), { keys, currentDate: NOW }), payload);
});

test('verifyTaskJws: keys may be a resolver instead of a list', async (t) => {
  const payload = taskPayload({}, nowSeconds);
  const resolver = createLocalJWKSet({ keys: [other.publicJwk, key.publicJwk] });
  t.is((await verifyTaskJws(await signedTask(key, payload), { keys: resolver, currentDate: NOW })).jti, payload.jti);
});

const valid = () => taskPayload({}, nowSeconds);

const refused: Array<[string, () => Promise<string>, ErrorCode]> = [
  ['signed by another key under its own kid', () => signedTask(other, valid()), 'TASK_SIGNATURE'],
  ['signed by another key claiming our kid', () => other.signRaw({ alg: 'ES256', typ: TASK_TYP, kid: key.publicJwk.kid }, valid()), 'TASK_SIGNATURE'],
  [
    'payload edited after signing',
    async () => {
      const [h, , s] = (await signedTask(key, valid())).split('.');
      return `${h}.${b64({ ...valid(), sql: 'SELECT * FROM secrets' })}.${s}`;
    },
    'TASK_SIGNATURE',
  ],
  [
    'header edited after signing',
    async () => {
      const [, p, s] = (await signedTask(key, valid())).split('.');
      return `${b64({ alg: 'ES256', typ: TASK_TYP, kid: other.publicJwk.kid })}.${p}.${s}`;
    },
    'TASK_SIGNATURE',
  ],
  ['wrong typ', () => key.signRaw({ alg: 'ES256', typ: 'JWT', kid: key.publicJwk.kid }, valid()), 'TASK_SIGNATURE'],
  ['no typ', () => key.signRaw({ alg: 'ES256', kid: key.publicJwk.kid }, valid()), 'TASK_SIGNATURE'],
  ['no kid', () => key.signRaw({ alg: 'ES256', typ: TASK_TYP }, valid()), 'TASK_SIGNATURE'],
  ['extra header member (crit)', () => key.signRaw({ alg: 'ES256', typ: TASK_TYP, kid: key.publicJwk.kid, crit: ['exp'], exp: 1 }, valid()), 'TASK_SIGNATURE'],
  ['alg none', async () => `${b64({ alg: 'none', typ: TASK_TYP, kid: key.publicJwk.kid })}.${b64(valid())}.`, 'TASK_SIGNATURE'],
  ['alg none with a junk signature', async () => `${b64({ alg: 'none', typ: TASK_TYP, kid: key.publicJwk.kid })}.${b64(valid())}.AAAA`, 'TASK_SIGNATURE'],
  [
    'alg HS256 keyed with the public key',
    async () => {
      const input = `${b64({ alg: 'HS256', typ: TASK_TYP, kid: key.publicJwk.kid })}.${b64(valid())}`;
      const hmac = await crypto.subtle.importKey('raw', new TextEncoder().encode(JSON.stringify(key.publicJwk)), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
      const sig = Buffer.from(await crypto.subtle.sign('HMAC', hmac, new TextEncoder().encode(input))).toString('base64url');
      return `${input}.${sig}`;
    },
    'TASK_SIGNATURE',
  ],
  ['expired', () => signedTask(key, taskPayload({ iat: nowSeconds - 7200, exp: nowSeconds - 3600 }, nowSeconds)), 'TASK_EXPIRED'],
  ['issued in the future', () => signedTask(key, taskPayload({ iat: nowSeconds + 3600, exp: nowSeconds + 7200 }, nowSeconds)), 'TASK_MALFORMED'],
  ['payload off the schema, correctly signed', () => key.signRaw({ alg: 'ES256', typ: TASK_TYP, kid: key.publicJwk.kid }, { ...valid(), kind: 'drop_table' }), 'TASK_MALFORMED'],
  ['payload with an extra member, correctly signed', () => key.signRaw({ alg: 'ES256', typ: TASK_TYP, kid: key.publicJwk.kid }, { ...valid(), admin: true }), 'TASK_MALFORMED'],
  ['payload not JSON, correctly signed', () => key.signRaw({ alg: 'ES256', typ: TASK_TYP, kid: key.publicJwk.kid }, 'not json'), 'TASK_MALFORMED'],
  ['garbage', async () => 'garbage', 'TASK_MALFORMED'],
  ['empty', async () => '', 'TASK_MALFORMED'],
  ['JSON serialization instead of compact', async () => JSON.stringify({ payload: b64(valid()), signatures: [] }), 'TASK_MALFORMED'],
  ['header not JSON', async () => `${b64('{{{')}.${b64(valid())}.AAAA`, 'TASK_MALFORMED'],
];

for (const [name, make, code] of refused) {
  test(`verifyTaskJws: ${name} is refused with ${code}`, async (t) => {
    const error = await t.throwsAsync(async () => verifyTaskJws(await make(), { keys, currentDate: NOW }), { instanceOf: CleanroomError });
    t.is(error?.code, code);
  });
}

test('verifyTaskJws: expiry honours the injected clock and the skew', async (t) => {
  const payload = taskPayload({ iat: nowSeconds - 100, exp: nowSeconds - 10 }, nowSeconds);
  const jws = await signedTask(key, payload);
  t.is((await verifyTaskJws(jws, { keys, currentDate: NOW })).jti, payload.jti); // within 30 s skew
  const error = await t.throwsAsync(verifyTaskJws(jws, { keys, currentDate: NOW, skewSeconds: 0 }), { instanceOf: CleanroomError });
  t.is(error?.code, 'TASK_EXPIRED');
});
