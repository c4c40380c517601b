import test from 'ava';
import { randomBytes, randomUUID } from 'node:crypto';
import { CompactEncrypt, calculateJwkThumbprint, decodeProtectedHeader, exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from 'jose';
import { DATA_KEY_TYP, unwrapDataKey, wrapDataKey, type UnwrapDataKeyOptions } from '../../protocol/data-key.ts';
import { CleanroomError, type ErrorCode } from '../../protocol/errors.ts';

// Every key here is made at test time (STYLE.md "Tests").
async function sessionKey(): Promise<{ privateKey: CryptoKey; publicJwk: JWK; thumbprint: string }> {
  const { privateKey, publicKey } = await generateKeyPair('ECDH-ES+A256KW', { crv: 'P-256' });
  const { kty, crv, x, y } = await exportJWK(publicKey);
  const publicJwk: JWK = { kty, crv, x, y, alg: 'ECDH-ES+A256KW', use: 'enc' };
  return { privateKey, publicJwk, thumbprint: await calculateJwkThumbprint({ kty, crv, x, y } as JWK) };
}

const session = await sessionKey();
const otherSession = await sessionKey();
const SESSION_ID = 'session-1';
const DATASET_ID = randomUUID();
const KEY = new Uint8Array(randomBytes(32));

const b64url = (value: string | Uint8Array): string => Buffer.from(value).toString('base64url');

function wrap(overrides: Partial<Parameters<typeof wrapDataKey>[0]> = {}): Promise<string> {
  return wrapDataKey({ key: KEY, sessionPublicJwk: session.publicJwk, sessionId: SESSION_ID, datasetId: DATASET_ID, ...overrides });
}

function unwrapOptions(jwe: string, overrides: Partial<UnwrapDataKeyOptions> = {}): UnwrapDataKeyOptions {
  return { jwe, sessionPrivateKey: session.privateKey, sessionId: SESSION_ID, datasetId: DATASET_ID, sessionKeyThumbprint: session.thumbprint, ...overrides };
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

/** The header wrapDataKey writes, for crafting variants with jose directly. */
function header(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    alg: 'ECDH-ES+A256KW',
    enc: 'A256GCM',
    typ: DATA_KEY_TYP,
    kid: session.thumbprint,
    'cleanroom.session': SESSION_ID,
    'cleanroom.dataset': DATASET_ID,
    ...extra,
  };
}

async function craft(plaintext: Uint8Array, protectedHeader: Record<string, unknown>): Promise<string> {
  const { kty, crv, x, y } = session.publicJwk;
  return new CompactEncrypt(plaintext).setProtectedHeader(protectedHeader as never).encrypt(await importJWK({ kty, crv, x, y }, 'ECDH-ES+A256KW'));
}

/** Replaces one base64url part of a compact serialization. */
function withPart(jwe: string, index: number, value: string): string {
  const parts = jwe.split('.');
  parts[index] = value;
  return parts.join('.');
}

/** Flips one character in the middle of a part, so the decoded bytes really change. */
function flip(jwe: string, index: number): string {
  const part = jwe.split('.')[index]!;
  const at = Math.floor(part.length / 2);
  return withPart(jwe, index, `${part.slice(0, at)}${part[at] === 'A' ? 'B' : 'A'}${part.slice(at + 1)}`);
}

// ---------- round trip ----------

test('data key: wrap then unwrap returns the same 32 bytes', async (t) => {
  const jwe = await wrap();
  t.deepEqual(await unwrapDataKey(unwrapOptions(jwe)), KEY);
});

test('data key: the protected header binds session, dataset and session key thumbprint, nothing else', async (t) => {
  const jwe = await wrap();
  t.is(jwe.split('.').length, 5);
  const { epk, ...rest } = decodeProtectedHeader(jwe);
  t.deepEqual(rest, header());
  t.deepEqual(Object.keys(epk ?? {}).sort(), ['crv', 'kty', 'x', 'y']);
});

test('data key: the session key JWK may carry kid and still wraps to its thumbprint', async (t) => {
  const jwe = await wrap({ sessionPublicJwk: { ...session.publicJwk, kid: 'some-label' } });
  t.is(decodeProtectedHeader(jwe).kid, session.thumbprint);
  t.deepEqual(await unwrapDataKey(unwrapOptions(jwe)), KEY);
});

test('data key: two wraps of the same key differ (fresh ephemeral key each time)', async (t) => {
  t.not(await wrap(), await wrap());
});

// ---------- refusals, all DATASET_KEY_UNWRAP ----------

test('unwrapDataKey: a key wrapped for another session is refused', async (t) => {
  const jwe = await wrap({ sessionId: 'session-2' });
  t.is(await refusal(unwrapDataKey(unwrapOptions(jwe))), 'DATASET_KEY_UNWRAP');
});

test('unwrapDataKey: a key wrapped for another dataset is refused', async (t) => {
  const jwe = await wrap({ datasetId: randomUUID() });
  t.is(await refusal(unwrapDataKey(unwrapOptions(jwe))), 'DATASET_KEY_UNWRAP');
});

test('unwrapDataKey: a key wrapped to another session key is refused by thumbprint', async (t) => {
  const jwe = await wrap({ sessionPublicJwk: otherSession.publicJwk });
  // Even with the right private key, the thumbprint the caller expects decides.
  t.is(await refusal(unwrapDataKey(unwrapOptions(jwe, { sessionPrivateKey: otherSession.privateKey }))), 'DATASET_KEY_UNWRAP');
  t.deepEqual(await unwrapDataKey(unwrapOptions(jwe, { sessionPrivateKey: otherSession.privateKey, sessionKeyThumbprint: otherSession.thumbprint })), KEY);
});

test('unwrapDataKey: the wrong private key is refused', async (t) => {
  const jwe = await wrap();
  t.is(await refusal(unwrapDataKey(unwrapOptions(jwe, { sessionPrivateKey: otherSession.privateKey }))), 'DATASET_KEY_UNWRAP');
});

test('unwrapDataKey: a header rewritten to name another dataset fails decryption (the header is AAD)', async (t) => {
  const jwe = await wrap();
  const otherDataset = randomUUID();
  const rewritten = withPart(jwe, 0, b64url(JSON.stringify({ ...decodeProtectedHeader(jwe), 'cleanroom.dataset': otherDataset })));
  t.is(await refusal(unwrapDataKey(unwrapOptions(rewritten, { datasetId: otherDataset }))), 'DATASET_KEY_UNWRAP');
});

test('unwrapDataKey: a header rewritten to another session fails decryption', async (t) => {
  const jwe = await wrap();
  const rewritten = withPart(jwe, 0, b64url(JSON.stringify({ ...decodeProtectedHeader(jwe), 'cleanroom.session': 'session-2' })));
  t.is(await refusal(unwrapDataKey(unwrapOptions(rewritten, { sessionId: 'session-2' }))), 'DATASET_KEY_UNWRAP');
});

for (const [name, index] of [
  ['ciphertext', 3],
  ['tag', 4],
  ['encrypted key', 1],
  ['iv', 2],
] as const) {
  test(`unwrapDataKey: a tampered ${name} is refused`, async (t) => {
    const jwe = await wrap();
    t.is(await refusal(unwrapDataKey(unwrapOptions(flip(jwe, index)))), 'DATASET_KEY_UNWRAP');
  });
}

test('unwrapDataKey: a crafted JWE with the exact header still unwraps (control for the cases below)', async (t) => {
  t.deepEqual(await unwrapDataKey(unwrapOptions(await craft(KEY, header()))), KEY);
});

for (const length of [0, 16, 31, 33, 64]) {
  test(`unwrapDataKey: a correctly wrapped ${length}-byte plaintext is refused`, async (t) => {
    const jwe = await craft(new Uint8Array(randomBytes(length)), header());
    t.is(await refusal(unwrapDataKey(unwrapOptions(jwe))), 'DATASET_KEY_UNWRAP');
  });
}

// Each of these decrypts with jose's defaults; only the pinned header refuses it.
const extraMembers: Array<[string, Record<string, unknown>]> = [
  ['jku', { jku: 'https://attacker.example/jwks' }],
  ['x5u', { x5u: 'https://attacker.example/cert' }],
  ['jwk', { jwk: { kty: 'EC', crv: 'P-256', x: 'A'.repeat(43), y: 'A'.repeat(43) } }],
  ['zip', { zip: 'DEF' }],
  ['an unknown member', { 'cleanroom.owner': 'someone@example.com' }],
  ['typ of another object', { typ: 'cleanroom-result+jwe' }],
  ['no typ', { typ: undefined }],
  ['no kid', { kid: undefined }],
];
for (const [name, extra] of extraMembers) {
  test(`unwrapDataKey: a header with ${name} is refused`, async (t) => {
    const jwe = await craft(KEY, JSON.parse(JSON.stringify(header(extra))));
    t.is(await refusal(unwrapDataKey(unwrapOptions(jwe))), 'DATASET_KEY_UNWRAP');
  });
}

test('unwrapDataKey: a header with crit is refused', async (t) => {
  const { kty, crv, x, y } = session.publicJwk;
  const jwe = await new CompactEncrypt(KEY)
    .setProtectedHeader({ ...header(), crit: ['cleanroom.session'] } as never)
    .encrypt(await importJWK({ kty, crv, x, y }, 'ECDH-ES+A256KW'), { crit: { 'cleanroom.session': true } });
  t.is(await refusal(unwrapDataKey(unwrapOptions(jwe))), 'DATASET_KEY_UNWRAP');
});

test('unwrapDataKey: other algorithms are refused (direct ECDH-ES, A128GCM)', async (t) => {
  const { kty, crv, x, y } = session.publicJwk;
  const direct = await new CompactEncrypt(KEY).setProtectedHeader({ ...header(), alg: 'ECDH-ES' } as never).encrypt(await importJWK({ kty, crv, x, y }, 'ECDH-ES'));
  t.is(await refusal(unwrapDataKey(unwrapOptions(direct))), 'DATASET_KEY_UNWRAP');
  const weaker = await craft(KEY, header({ enc: 'A128GCM' }));
  t.is(await refusal(unwrapDataKey(unwrapOptions(weaker))), 'DATASET_KEY_UNWRAP');
});

const malformed: Array<[string, unknown]> = [
  ['an empty string', ''],
  ['a JWS', 'a.b.c'],
  ['six parts', 'a.b.c.d.e.f'],
  ['a header that is not JSON', `${b64url('not json')}.a.b.c.d`],
  ['a non-string', 42],
  ['an oversized string', `${'a'.repeat(5000)}.a.b.c.d`],
];
for (const [name, jwe] of malformed) {
  test(`unwrapDataKey: ${name} is refused`, async (t) => {
    t.is(await refusal(unwrapDataKey(unwrapOptions(jwe as string))), 'DATASET_KEY_UNWRAP');
  });
}

// ---------- misuse ----------

test('wrapDataKey: misuse is a TypeError', async (t) => {
  await t.throwsAsync(wrap({ key: new Uint8Array(16) }), { instanceOf: TypeError });
  await t.throwsAsync(wrap({ datasetId: 'not-a-uuid' }), { instanceOf: TypeError });
  await t.throwsAsync(wrap({ sessionId: 'has/slash' }), { instanceOf: TypeError });
  const privateJwk = await exportJWK((await generateKeyPair('ECDH-ES+A256KW', { extractable: true })).privateKey);
  await t.throwsAsync(wrap({ sessionPublicJwk: privateJwk }), { instanceOf: TypeError });
  await t.throwsAsync(wrap({ sessionPublicJwk: { ...session.publicJwk, alg: 'ES256' } }), { instanceOf: TypeError });
});
