import test from 'ava';
import { createHash, randomUUID } from 'node:crypto';
import { CompactSign, GeneralEncrypt, SignJWT, calculateJwkThumbprint, createLocalJWKSet, decodeProtectedHeader, exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from 'jose';
import * as v from 'valibot';
import { canonicalResultJson } from '../../enclave-worker/executor/digest-sink.ts';
import { attestationNonce, CallerNonceSchema, type AttestationPolicy } from '../../protocol/attestation.ts';
import { RECEIPT_NONCE, type SealedResult, type TaskRecipientKey } from '../../protocol/dataset.ts';
import { CleanroomError, type ErrorCode } from '../../protocol/errors.ts';
import {
  MIN_RESULT_BUCKET_BYTES,
  RECEIPT_TYP,
  canonicalResultBytes,
  openSealedResult,
  receiptIdentityVerifier,
  resultBucketBytes,
  sealResult,
  type OpenSealedResultOptions,
  type SealResultOptions,
  type VerifyIdentity,
} from '../../protocol/sealed-result.ts';

// Every key and token here is made at test time (STYLE.md "Tests"): a local RS256 key plays the
// worker's dev attester, its JWKS injected as `devKeys`.
const NOW = new Date('2030-01-01T00:00:00Z');
const now = Math.floor(NOW.getTime() / 1000);
const AUDIENCE = 'cleanroom-clients';
const DEV_ISSUER = 'http://127.0.0.1:8080/dev-attestation';
const DIGEST = `sha256:${createHash('sha256').update('worker-image-v1').digest('hex')}`;
const SESSION_ID = 'session-1';
const QUERY_ID = randomUUID();
const OTHER_QUERY_ID = randomUUID();
const SQL = 'SELECT region, COUNT(*) AS n FROM sales GROUP BY region ORDER BY region';
const sha256 = (data: string | Uint8Array): string => createHash('sha256').update(data).digest('hex');

async function identity(): Promise<{ privateKey: CryptoKey; publicJwk: JWK; thumbprint: string }> {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const { kty, crv, x, y } = await exportJWK(publicKey);
  const thumbprint = await calculateJwkThumbprint({ kty, crv, x, y } as JWK);
  return { privateKey, publicJwk: { kty, crv, x, y, alg: 'ES256', use: 'sig', kid: thumbprint }, thumbprint };
}

async function recipient(email: string): Promise<{ privateKey: CryptoKey; key: TaskRecipientKey }> {
  const { privateKey, publicKey } = await generateKeyPair('ECDH-ES+A256KW', { crv: 'P-256' });
  const { kty, crv, x, y } = await exportJWK(publicKey);
  return { privateKey, key: { email, encryption_jwk: { kty: kty as 'EC', crv: crv as 'P-256', x: x!, y: y!, alg: 'ECDH-ES+A256KW', use: 'enc' } } };
}

const dev = await (async () => {
  const { privateKey, publicKey } = await generateKeyPair('RS256');
  return { privateKey, jwk: { ...(await exportJWK(publicKey)), kid: 'dev-1', alg: 'RS256', use: 'sig' } as JWK };
})();
const devKeys = createLocalJWKSet({ keys: [dev.jwk] });
const policy: AttestationPolicy = { audience: AUDIENCE, allowedImageDigests: [DIGEST], allowInsecureDev: true, devIssuer: DEV_ISSUER };
const verifyIdentity = receiptIdentityVerifier({ policy, devKeys });

const worker = await identity();
const impostor = await identity();
const alice = await recipient('alice@example.com');
const bob = await recipient('bob@example.com');
const carol = await recipient('carol@example.com');

/** A dev attester's token binding `nonce` and the identity thumbprint, valid for an hour from `iat`. */
async function attestation(options: { thumbprint?: string; nonce?: string; iat?: number } = {}): Promise<string> {
  const iat = options.iat ?? now - 60;
  const claims = {
    iss: DEV_ISSUER,
    aud: AUDIENCE,
    iat,
    exp: iat + 3600,
    eat_nonce: await attestationNonce(options.nonce ?? RECEIPT_NONCE, options.thumbprint ?? worker.thumbprint),
    hwmodel: 'INSECURE_DEV',
    swname: 'CONFIDENTIAL_SPACE',
    submods: { container: { image_digest: DIGEST } },
  };
  return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: 'dev-1', typ: 'JWT' }).sign(dev.privateKey);
}

const WORKER_ATTESTATION = await attestation();
const INPUT_B = { dataset_id: 'ffffffff-0000-4000-8000-000000000000', ciphertext_sha256: sha256('b') };
const INPUT_A = { dataset_id: '00000000-0000-4000-8000-000000000000', ciphertext_sha256: sha256('a') };
const RESULT = {
  columns: [
    { name: 'region', type: 'VARCHAR' },
    { name: 'n', type: 'BIGINT' },
  ],
  rows: [
    ['north', 12],
    ['south', 7],
  ],
};

function seal(overrides: Partial<SealResultOptions> = {}): Promise<SealedResult> {
  return sealResult({
    sessionId: SESSION_ID,
    queryId: QUERY_ID,
    attempt: 1,
    sql: SQL,
    inputs: [INPUT_B, INPUT_A],
    result: RESULT,
    recipients: [bob.key, alice.key],
    identity: worker,
    attestation: WORKER_ATTESTATION,
    imageDigest: DIGEST,
    now: NOW,
    ...overrides,
  });
}

function open(sealed: unknown, overrides: Partial<OpenSealedResultOptions> = {}) {
  return openSealedResult({ sealed, recipientPrivateKey: alice.privateKey, expect: { sessionId: SESSION_ID, queryId: QUERY_ID }, verifyIdentity, ...overrides });
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

const b64json = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');
const unb64json = (part: string): any => JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));

/** A receipt over `payload`, signed by `signer` (the worker by default). */
function receipt(payload: Record<string, unknown>, signer: { privateKey: CryptoKey; thumbprint: string } = worker, header: Record<string, unknown> = {}): Promise<string> {
  return new CompactSign(new TextEncoder().encode(JSON.stringify(payload))).setProtectedHeader({ alg: 'ES256', typ: RECEIPT_TYP, kid: signer.thumbprint, ...header } as never).sign(signer.privateKey);
}

function flipMiddle(part: string): string {
  const at = Math.floor(part.length / 2);
  return `${part.slice(0, at)}${part[at] === 'A' ? 'B' : 'A'}${part.slice(at + 1)}`;
}

const sealed = await seal();
const receiptPayload = unb64json(sealed.receipt.split('.')[1]!);

// ---------- canonical bytes and padding ----------

test('RECEIPT_NONCE is a valid caller nonce for attestationNonce', (t) => {
  t.true(v.is(CallerNonceSchema, RECEIPT_NONCE));
});

test("canonicalResultBytes: byte-identical to the worker's canonicalResultJson", (t) => {
  const corpus = [
    RESULT,
    { columns: [], rows: [] },
    {
      columns: [{ type: 'DOUBLE', name: 'x' }],
      rows: [[1.5], [-0], [1e21], [0.1 + 0.2], [null], [true], ['ünïcødé "quoted" \\ \u0001 \u2028'], [{ b: 1, a: [2, { d: null, c: 'x' }] }], [[3, 2, 1]]],
    },
    {
      columns: [
        { name: 'Z', type: 'VARCHAR' },
        { name: 'a', type: 'VARCHAR' },
      ],
      rows: [[{ Z: 1, a: 2, _: 3, é: 4, '10': 5, '9': 6 }]],
    },
  ];
  for (const result of corpus) {
    t.deepEqual(canonicalResultBytes(result), new TextEncoder().encode(canonicalResultJson(result as never)));
  }
  t.is(new TextDecoder().decode(canonicalResultBytes(RESULT)), '{"columns":[{"name":"region","type":"VARCHAR"},{"name":"n","type":"BIGINT"}],"rows":[["north",12],["south",7]]}');
});

test('canonicalResultBytes: a value JSON cannot carry is a TypeError', (t) => {
  t.throws(() => canonicalResultBytes({ columns: [], rows: [[undefined]] }), { instanceOf: TypeError });
  t.throws(() => canonicalResultBytes({ columns: [], rows: [[10n]] }), { instanceOf: TypeError });
});

test('resultBucketBytes: the next power of two, at least 1 KiB', (t) => {
  const cases: Array<[number, number]> = [
    [0, 1024],
    [1, 1024],
    [1024, 1024],
    [1025, 2048],
    [2048, 2048],
    [5000, 8192],
    [1 << 20, 1 << 20],
    [(1 << 20) + 1, 1 << 21],
  ];
  for (const [length, bucket] of cases) t.is(resultBucketBytes(length), bucket, `length ${length}`);
});

test('sealResult: results of different small sizes have ciphertexts of equal length', async (t) => {
  const small = await seal({ result: { columns: [{ name: 'n', type: 'BIGINT' }], rows: [[1]] } });
  t.is(small.jwe.ciphertext.length, sealed.jwe.ciphertext.length);
  t.is(Buffer.from(small.jwe.ciphertext, 'base64url').byteLength, MIN_RESULT_BUCKET_BYTES);
  const rows = Array.from({ length: 60 }, (_, i) => [`region-${i}`, i]);
  const larger = await seal({ result: { columns: RESULT.columns, rows } });
  t.is(Buffer.from(larger.jwe.ciphertext, 'base64url').byteLength, 2048);
  // The receipt still hashes the unpadded canonical bytes, and the opener strips the padding.
  const opened = await open(larger);
  t.deepEqual(opened.rows, rows);
  t.is(opened.receipt.result_sha256, saltedSha256({ columns: RESULT.columns, rows }, opened.salt));
});

/** SHA-256 of the sealed plaintext `{columns, rows, salt}` (keys sorted), computed independently. */
function saltedSha256(result: { columns: unknown[]; rows: unknown[][] }, salt: string): string {
  const canonical = canonicalResultJson(result as never);
  return sha256(`${canonical.slice(0, -1)},"salt":${JSON.stringify(salt)}}`);
}

test('sealResult: the receipt outside the ciphertext cannot confirm a guessed result (salted hash, no row count)', async (t) => {
  const again = await seal();
  const first = await open(sealed);
  const second = await open(again);
  t.not(first.receipt.result_sha256, second.receipt.result_sha256);
  t.not(first.receipt.result_sha256, sha256(canonicalResultBytes(RESULT)));
  t.false('rows' in first.receipt);
  t.not(first.salt, second.salt);
});

// ---------- seal and open ----------

test('sealResult: a General JWE to each recipient with the bound protected header', (t) => {
  t.deepEqual(decodeProtectedHeader(sealed.jwe as never), {
    alg: 'ECDH-ES+A256KW',
    enc: 'A256GCM',
    typ: 'cleanroom-result+jwe',
    'cleanroom.session': SESSION_ID,
    'cleanroom.query': QUERY_ID,
  });
  t.is(sealed.jwe.recipients.length, 2);
  t.deepEqual(
    sealed.jwe.recipients.map((entry) => [entry.header?.['cleanroom.recipient'], entry.header?.kid]),
    [
      ['bob@example.com', calculateJwkThumbprintSync(bob.key.encryption_jwk)],
      ['alice@example.com', calculateJwkThumbprintSync(alice.key.encryption_jwk)],
    ],
  );
  t.deepEqual(Object.keys(sealed.identity_jwk).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']);
  t.is(sealed.identity_jwk.kid, worker.thumbprint);
});

/** RFC 7638 thumbprint with node:crypto, independent of the code under test. */
function calculateJwkThumbprintSync(jwk: { crv: string; kty: string; x: string; y: string }): string {
  return createHash('sha256')
    .update(JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y }))
    .digest('base64url');
}

test('openSealedResult: each recipient opens the result and gets the verified receipt', async (t) => {
  for (const who of [alice, bob]) {
    const opened = await open(sealed, { recipientPrivateKey: who.privateKey });
    t.deepEqual(opened.columns, RESULT.columns);
    t.deepEqual(opened.rows, RESULT.rows);
    t.deepEqual(opened.receipt, {
      typ: 'cleanroom-receipt/v1',
      session_id: SESSION_ID,
      query_id: QUERY_ID,
      attempt: 1,
      sql_sha256: sha256(SQL),
      inputs: [INPUT_A, INPUT_B],
      result_sha256: saltedSha256(RESULT, opened.salt),
      recipients: ['alice@example.com', 'bob@example.com'],
      image_digest: DIGEST,
      iat: now,
    });
  }
});

test('openSealedResult: a single-recipient result opens too', async (t) => {
  const single = await seal({ recipients: [carol.key] });
  const opened = await open(single, { recipientPrivateKey: carol.privateKey });
  t.deepEqual(opened.rows, RESULT.rows);
  t.is(await refusal(open(single)), 'RESULT_TAMPERED');
});

test('openSealedResult: the identity is verified at the receipt time, with the presented key', async (t) => {
  const calls: Array<[string, JWK, Date]> = [];
  const spy: VerifyIdentity = async (token, jwk, at) => {
    calls.push([token, jwk, at]);
  };
  await open(sealed, { verifyIdentity: spy });
  t.is(calls.length, 1);
  t.is(calls[0]![0], WORKER_ATTESTATION);
  t.is(calls[0]![1].x, worker.publicJwk.x);
  t.is(calls[0]![2].getTime(), now * 1000);
});

test('openSealedResult: the attestation must be valid at the receipt time, whatever the wall clock says', async (t) => {
  // The token is valid from now - 60 s for an hour; the clock of this test run is years earlier.
  const within = await seal({ now: new Date((now + 3000) * 1000) });
  t.deepEqual((await open(within)).rows, RESULT.rows);
  const after = await seal({ now: new Date((now + 4000) * 1000) });
  t.is(await refusal(open(after)), 'ATTESTATION_EXPIRED');
});

// ---------- refusals ----------

test('openSealedResult: a key that is not a recipient cannot open it', async (t) => {
  t.is(await refusal(open(sealed, { recipientPrivateKey: carol.privateKey })), 'RESULT_TAMPERED');
});

const refusals: Array<{ name: string; sealed: () => Promise<unknown>; options?: Partial<OpenSealedResultOptions>; code: ErrorCode }> = [
  // Shape.
  { name: 'not an object', sealed: async () => 'sealed', code: 'RESULT_TAMPERED' },
  { name: 'an extra member', sealed: async () => ({ ...sealed, extra: 1 }), code: 'RESULT_TAMPERED' },
  { name: 'no recipients', sealed: async () => ({ ...sealed, jwe: { ...sealed.jwe, recipients: [] } }), code: 'RESULT_TAMPERED' },
  // Ids.
  { name: 'expected another query', sealed: async () => sealed, options: { expect: { sessionId: SESSION_ID, queryId: OTHER_QUERY_ID } }, code: 'RESULT_TAMPERED' },
  { name: 'expected another session', sealed: async () => sealed, options: { expect: { sessionId: 'session-2', queryId: QUERY_ID } }, code: 'RESULT_TAMPERED' },
  { name: 'an envelope naming another query than its header', sealed: async () => ({ ...sealed, query_id: OTHER_QUERY_ID }), code: 'RESULT_TAMPERED' },
  { name: 'an envelope naming another session than its header', sealed: async () => ({ ...sealed, session_id: 'session-2' }), code: 'RESULT_TAMPERED' },
  {
    name: 'an envelope relabelled to another query',
    sealed: async () => ({ ...sealed, query_id: OTHER_QUERY_ID }),
    options: { expect: { sessionId: SESSION_ID, queryId: OTHER_QUERY_ID } },
    code: 'RESULT_TAMPERED',
  },
  {
    name: 'a protected header with an extra member (zip)',
    sealed: async () => ({ ...sealed, jwe: { ...sealed.jwe, protected: b64json({ ...unb64json(sealed.jwe.protected), zip: 'DEF' }) } }),
    code: 'RESULT_TAMPERED',
  },
  { name: 'a shared unprotected header', sealed: async () => ({ ...sealed, jwe: { ...sealed.jwe, unprotected: { jku: 'https://attacker.example' } } }), code: 'RESULT_TAMPERED' },
  {
    name: 'a recipient entry with an extra member (jku)',
    sealed: async () => ({ ...sealed, jwe: { ...sealed.jwe, recipients: sealed.jwe.recipients.map((r) => ({ ...r, header: { ...r.header, jku: 'https://attacker.example' } })) } }),
    code: 'RESULT_TAMPERED',
  },
  // Ciphertext.
  { name: 'a tampered ciphertext', sealed: async () => ({ ...sealed, jwe: { ...sealed.jwe, ciphertext: flipMiddle(sealed.jwe.ciphertext) } }), code: 'RESULT_TAMPERED' },
  { name: 'a tampered tag', sealed: async () => ({ ...sealed, jwe: { ...sealed.jwe, tag: flipMiddle(sealed.jwe.tag) } }), code: 'RESULT_TAMPERED' },
  {
    name: "the ciphertext of another query's result under this envelope",
    sealed: async () => {
      const other = await seal({ queryId: OTHER_QUERY_ID });
      return { ...sealed, jwe: { ...other.jwe, protected: sealed.jwe.protected } };
    },
    code: 'RESULT_TAMPERED',
  },
  // Receipt.
  { name: 'a receipt from another query', sealed: async () => ({ ...sealed, receipt: (await seal({ queryId: OTHER_QUERY_ID })).receipt }), code: 'RESULT_RECEIPT_INVALID' },
  { name: 'a receipt signed by another key', sealed: async () => ({ ...sealed, receipt: await receipt(receiptPayload, impostor, { kid: worker.thumbprint }) }), code: 'RESULT_RECEIPT_INVALID' },
  { name: 'a receipt naming another key', sealed: async () => ({ ...sealed, receipt: await receipt(receiptPayload, worker, { kid: impostor.thumbprint }) }), code: 'RESULT_RECEIPT_INVALID' },
  { name: 'a receipt with another typ', sealed: async () => ({ ...sealed, receipt: await receipt(receiptPayload, worker, { typ: 'JWT' }) }), code: 'RESULT_RECEIPT_INVALID' },
  {
    name: 'a receipt whose result_sha256 does not match',
    sealed: async () => ({ ...sealed, receipt: await receipt({ ...receiptPayload, result_sha256: sha256('other') }) }),
    code: 'RESULT_RECEIPT_INVALID',
  },
  {
    name: 'a receipt carrying a row count (it belongs inside the ciphertext)',
    sealed: async () => ({ ...sealed, receipt: await receipt({ ...receiptPayload, rows: 3 }) }),
    code: 'RESULT_RECEIPT_INVALID',
  },
  { name: 'a receipt payload off schema', sealed: async () => ({ ...sealed, receipt: await receipt({ ...receiptPayload, extra: 1 }) }), code: 'RESULT_RECEIPT_INVALID' },
  {
    name: 'a receipt with a swapped payload',
    sealed: async () => {
      const [header, , signature] = sealed.receipt.split('.');
      return { ...sealed, receipt: `${header}.${b64json({ ...receiptPayload, result_sha256: sha256('other') })}.${signature}` };
    },
    code: 'RESULT_RECEIPT_INVALID',
  },
  { name: 'a receipt with an iat outside the range of dates', sealed: async () => ({ ...sealed, receipt: await receipt({ ...receiptPayload, iat: 9e12 }) }), code: 'RESULT_RECEIPT_INVALID' },
  { name: 'a receipt that is not a JWS', sealed: async () => ({ ...sealed, receipt: 'not-a-receipt' }), code: 'RESULT_RECEIPT_INVALID' },
  // Identity: the verifier's codes pass through.
  {
    name: 'another identity key with its own receipt and the genuine attestation',
    sealed: async () => ({ ...sealed, identity_jwk: { ...impostor.publicJwk }, receipt: await receipt(receiptPayload, impostor) }),
    code: 'ATTESTATION_NONCE',
  },
  { name: 'an attestation bound to another nonce', sealed: async () => ({ ...sealed, attestation: await attestation({ nonce: 'some-session-key-request-nonce' }) }), code: 'ATTESTATION_NONCE' },
  { name: 'an attestation expired at the receipt time', sealed: async () => ({ ...sealed, attestation: await attestation({ iat: now - 7200 }) }), code: 'ATTESTATION_EXPIRED' },
  {
    name: 'a receipt backdated into an old attestation, signed by a key that attestation does not bind',
    sealed: async () => ({
      ...sealed,
      identity_jwk: { ...impostor.publicJwk },
      attestation: await attestation({ iat: now - 7200 }),
      receipt: await receipt({ ...receiptPayload, iat: now - 7100 }, impostor),
    }),
    code: 'ATTESTATION_NONCE',
  },
];
for (const { name, sealed: make, options: overrides, code } of refusals) {
  test(`openSealedResult: ${name} is refused with ${code}`, async (t) => {
    t.is(await refusal(open(await make(), overrides)), code);
  });
}

test('openSealedResult: the identity check runs before the receipt and the ciphertext are trusted', async (t) => {
  const failing: VerifyIdentity = async () => {
    throw new CleanroomError('ATTESTATION_SIGNATURE', 'refused');
  };
  t.is(await refusal(open(sealed, { verifyIdentity: failing })), 'ATTESTATION_SIGNATURE');
});

/**
 * The sealed result with its JWE rebuilt by jose directly under `header` (the receipt still
 * matches the plaintext), so that only the pinned protected header can refuse it.
 */
async function withCraftedJwe(header: Record<string, unknown>): Promise<SealedResult> {
  const { salt } = await open(sealed);
  const padded = new Uint8Array(MIN_RESULT_BUCKET_BYTES).fill(0x20);
  padded.set(new TextEncoder().encode(`${canonicalResultJson(RESULT as never).slice(0, -1)},"salt":${JSON.stringify(salt)}}`));
  const encrypt = new GeneralEncrypt(padded).setProtectedHeader(header as never);
  for (const who of [alice, bob]) {
    encrypt
      .addRecipient(await importJWK(who.key.encryption_jwk, 'ECDH-ES+A256KW'))
      .setUnprotectedHeader({ kid: calculateJwkThumbprintSync(who.key.encryption_jwk), 'cleanroom.recipient': who.key.email });
  }
  return { ...sealed, jwe: (await encrypt.encrypt()) as SealedResult['jwe'] };
}

const exactHeader = () => ({ alg: 'ECDH-ES+A256KW', enc: 'A256GCM', typ: 'cleanroom-result+jwe', 'cleanroom.session': SESSION_ID, 'cleanroom.query': QUERY_ID });

test('openSealedResult: a JWE crafted with the exact header opens (control for the cases below)', async (t) => {
  t.deepEqual((await open(await withCraftedJwe(exactHeader()))).rows, RESULT.rows);
});

// Each of these decrypts with jose's defaults; only the pinned protected header refuses it.
const headerVariants: Array<[string, Record<string, unknown>]> = [
  ['jku', { jku: 'https://attacker.example/jwks' }],
  ['x5u', { x5u: 'https://attacker.example/cert' }],
  ['zip', { zip: 'DEF' }],
  ['an unknown member', { 'cleanroom.note': 'x' }],
  ['another typ', { typ: 'cleanroom-data-key+jwe' }],
];
for (const [name, extra] of headerVariants) {
  test(`openSealedResult: a protected header with ${name} is refused with RESULT_TAMPERED`, async (t) => {
    t.is(await refusal(open(await withCraftedJwe({ ...exactHeader(), ...extra }))), 'RESULT_TAMPERED');
  });
}

// ---------- misuse ----------

test('sealResult: no recipients or a duplicate email is a TypeError', async (t) => {
  await t.throwsAsync(seal({ recipients: [] }), { instanceOf: TypeError });
  await t.throwsAsync(seal({ recipients: [alice.key, { ...bob.key, email: 'alice@example.com' }] }), { instanceOf: TypeError });
  await t.throwsAsync(seal({ recipients: [alice.key, { ...bob.key, email: 'Alice@Example.com' }] }), { instanceOf: TypeError });
  await t.throwsAsync(seal({ queryId: 'not-a-uuid' }), { instanceOf: TypeError });
  await t.throwsAsync(seal({ inputs: [{ dataset_id: INPUT_A.dataset_id, ciphertext_sha256: 'nothex' }] }), { instanceOf: TypeError });
});

test('openSealedResult: a receipt naming another image than the attested one is refused with RESULT_RECEIPT_INVALID', async (t) => {
  const otherImage = await seal({ imageDigest: `sha256:${'9'.repeat(64)}` });
  t.is(await refusal(open(otherImage)), 'RESULT_RECEIPT_INVALID');
  // Control: the attested image opens.
  t.deepEqual((await open(await seal())).rows, RESULT.rows);
});
