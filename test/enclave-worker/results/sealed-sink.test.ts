import test from 'ava';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt, exportJWK, generateKeyPair } from 'jose';
import type { ExecuteRequest, QueryResult } from '../../../enclave-worker/executor/ports.ts';
import { RECEIPT_ATTESTATION_MARGIN_MS, receiptAttestation } from '../../../enclave-worker/results/receipt-attestation.ts';
import { SealedResultSink } from '../../../enclave-worker/results/sealed-sink.ts';
import { attestationNonce } from '../../../protocol/attestation.ts';
import { objectKeys, RECEIPT_NONCE, type TaskRecipientKey } from '../../../protocol/dataset.ts';
import { CleanroomError } from '../../../protocol/errors.ts';
import { openSealedResult, receiptIdentityVerifier } from '../../../protocol/sealed-result.ts';
import { LocalObjectStore } from '../../../runtime/object-store/local.ts';
import { AUDIENCE, IMAGE_DIGEST, devTrust } from '../dev-trust.ts';

// Awaited before any test is declared (ava closes declarations once the module yields after one).
const trust = await devTrust();
const alice = await recipient('alice@example.com');
const bob = await recipient('bob@example.com');
const eve = await recipient('eve@example.com');
const root = mkdtempSync(join(tmpdir(), 'sealed-sink-'));
test.after.always(() => rmSync(root, { recursive: true, force: true }));

async function recipient(email: string): Promise<{ key: TaskRecipientKey; privateKey: CryptoKey }> {
  const { publicKey, privateKey } = await generateKeyPair('ECDH-ES+A256KW', { crv: 'P-256' });
  const { kty, crv, x, y } = await exportJWK(publicKey);
  return { key: { email, encryption_jwk: { kty: kty as 'EC', crv: crv as 'P-256', x: x!, y: y!, alg: 'ECDH-ES+A256KW', use: 'enc' } }, privateKey };
}

function sink() {
  const dir = mkdtempSync(join(root, 'objects-'));
  const objects = new LocalObjectStore(dir);
  let tokens = 0;
  const attester = { token: (request: Parameters<typeof trust.attester.token>[0]) => (tokens++, trust.attester.token(request)) };
  const attestation = receiptAttestation({ attester, audience: AUDIENCE, identity: trust.identity, fallbackImageDigest: `sha256:${'0'.repeat(64)}` });
  return { dir, objects, sink: new SealedResultSink({ objects, identity: trust.identity, attestation }), tokens: () => tokens };
}

function executeRequest(overrides: Partial<ExecuteRequest> = {}): ExecuteRequest {
  return {
    sessionId: crypto.randomUUID(),
    queryId: crypto.randomUUID(),
    attempt: 1,
    sql: 'SELECT region, count(*) AS n FROM sales GROUP BY region ORDER BY region',
    inputs: [],
    recipients: [alice.key, bob.key],
    ...overrides,
  };
}

const result = (rows: QueryResult['rows']): QueryResult => ({
  columns: [
    { name: 'region', type: 'VARCHAR' },
    { name: 'n', type: 'BIGINT' },
  ],
  rows,
  bytes: JSON.stringify(rows).length,
});
const inputs = [
  { dataset_id: 'f0000000-0000-4000-8000-000000000002', ciphertext_sha256: 'b'.repeat(64) },
  { dataset_id: 'f0000000-0000-4000-8000-000000000001', ciphertext_sha256: 'a'.repeat(64) },
];
const verifyIdentity = receiptIdentityVerifier({ policy: trust.policy, devKeys: trust.devKeys });

function stored(dir: string, request: ExecuteRequest): unknown {
  return JSON.parse(readFileSync(join(dir, objectKeys.result(request.sessionId, request.queryId)), 'utf8'));
}

test('sealed sink: every recipient opens the result and its receipt names the query, inputs and image', async (t) => {
  const { dir, sink: s } = sink();
  const request = executeRequest();
  const ref = await s.write(
    request,
    result([
      ['east', 3],
      ['west', 5],
    ]),
    inputs,
  );
  const key = objectKeys.result(request.sessionId, request.queryId);
  t.is(ref.ref, `object:${key}`);
  t.is(ref.rows, 2);
  t.is(ref.bytes, statSync(join(dir, key)).size);
  for (const { privateKey } of [alice, bob]) {
    const opened = await openSealedResult({ sealed: stored(dir, request) as any, recipientPrivateKey: privateKey, expect: { sessionId: request.sessionId, queryId: request.queryId }, verifyIdentity });
    t.deepEqual(opened.rows, [
      ['east', 3],
      ['west', 5],
    ]);
    t.deepEqual(opened.receipt.recipients, ['alice@example.com', 'bob@example.com']);
    t.deepEqual(
      opened.receipt.inputs.map((i) => i.dataset_id),
      [inputs[1]!.dataset_id, inputs[0]!.dataset_id],
    );
    t.is(opened.receipt.image_digest, IMAGE_DIGEST, 'the digest the attestation names');
    t.is(opened.receipt.attempt, 1);
  }
  t.false(readFileSync(join(dir, key), 'utf8').includes('east'), 'no plaintext in the object');
});

test('sealed sink: a non-recipient cannot open it', async (t) => {
  const { dir, sink: s } = sink();
  const request = executeRequest({ recipients: [alice.key] });
  await s.write(request, result([['east', 1]]), []);
  const err = await t.throwsAsync(
    openSealedResult({ sealed: stored(dir, request) as any, recipientPrivateKey: eve.privateKey, expect: { sessionId: request.sessionId, queryId: request.queryId }, verifyIdentity }),
  );
  t.is((err as CleanroomError).code, 'RESULT_TAMPERED');
});

test('sealed sink: a second write for the query keeps the first result and answers with its ref', async (t) => {
  const { dir, sink: s } = sink();
  const request = executeRequest();
  const first = await s.write(request, result([['east', 3]]), inputs);
  const before = readFileSync(join(dir, objectKeys.result(request.sessionId, request.queryId)));
  const second = await s.write({ ...request, attempt: 2 }, result([['east', 4]]), inputs);
  t.deepEqual(second, first);
  t.true(readFileSync(join(dir, objectKeys.result(request.sessionId, request.queryId))).equals(before));
  const opened = await openSealedResult({
    sealed: stored(dir, request) as any,
    recipientPrivateKey: alice.privateKey,
    expect: { sessionId: request.sessionId, queryId: request.queryId },
    verifyIdentity,
  });
  t.deepEqual(opened.rows, [['east', 3]]);
});

test('sealed sink: concurrent writes of one query store one result', async (t) => {
  const { sink: s } = sink();
  const request = executeRequest();
  const refs = await Promise.all([1, 2, 3, 4].map((n) => s.write(request, result([[`r${n}`, n]]), [])));
  t.is(new Set(refs.map((r) => JSON.stringify(r))).size, 1);
});

test('sealed sink: no recipient keys is RECIPIENT_KEY_MISSING and nothing is stored', async (t) => {
  const { objects, sink: s } = sink();
  const request = executeRequest({ recipients: [] });
  const err = await t.throwsAsync(s.write(request, result([]), []));
  t.is((err as CleanroomError).code, 'RECIPIENT_KEY_MISSING');
  t.is(await objects.stat(objectKeys.result(request.sessionId, request.queryId)), null);
});

test('sealed sink: one receipt attestation serves many results', async (t) => {
  const { sink: s, tokens } = sink();
  for (let i = 0; i < 3; i++) await s.write(executeRequest(), result([['x', i]]), []);
  t.is(tokens(), 1);
});

test('receipt attestation: binds the identity key, is refreshed 5 minutes before it expires', async (t) => {
  let now = Date.now();
  const minted: string[] = [];
  const attester = {
    token: async (request: Parameters<typeof trust.attester.token>[0]) => {
      const token = await trust.attester.token(request);
      minted.push(token);
      return token;
    },
  };
  const get = receiptAttestation({ attester, audience: AUDIENCE, identity: trust.identity, fallbackImageDigest: IMAGE_DIGEST, now: () => now });
  const [a, b] = await Promise.all([get(), get()]);
  t.is(minted.length, 1, 'concurrent callers share one request');
  t.is(a.token, b.token);
  t.is(decodeJwt(a.token).eat_nonce, await attestationNonce(RECEIPT_NONCE, trust.identity.thumbprint));
  const exp = decodeJwt(a.token).exp! * 1000;
  now = exp - RECEIPT_ATTESTATION_MARGIN_MS - 1;
  await get();
  t.is(minted.length, 1);
  now = exp - RECEIPT_ATTESTATION_MARGIN_MS + 1;
  await get();
  t.is(minted.length, 2);
});
