import test from 'ava';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { objectKeys } from '../../protocol/dataset.ts';
import { wrapDataKey } from '../../protocol/data-key.ts';
import { encryptDataset, generateDataKey } from '../../protocol/dataset-format.ts';
import { openSealedResult, receiptIdentityVerifier } from '../../protocol/sealed-result.ts';
import { verifySessionKeyBundle } from '../../protocol/session-key.ts';
import { nodeAead } from '../../runtime/aead-node.ts';
import { startFullStack, type FullStack } from './stack.ts';

/**
 * The confidential data path end to end on one machine, with the worker as a child process that
 * decrypts (no plaintext fixtures): the owner verifies the session key bundle the control plane
 * relays from the worker, encrypts a CSV to it, uploads and registers it; a query runs on the
 * decrypted rows and its result comes back sealed to the recipients, with a receipt naming the
 * input's ciphertext.
 */
const OWNER = 'owner@example.com';
const ANALYST = 'analyst@example.com';
/** The digest the local worker's dev attester claims by default (`enclave-worker/config.ts`). */
const DEV_WORKER_DIGEST = `sha256:${'0'.repeat(56)}de7de7de`;
let stack: FullStack;

test.before(async () => {
  stack = await startFullStack({ plaintextFixtures: false });
});
test.after.always(async () => {
  await stack?.close();
});

const policy = () => ({ audience: 'cleanroom-clients', allowedImageDigests: [DEV_WORKER_DIGEST], allowInsecureDev: true, devIssuer: `${stack.workerUrl}/dev-attestation` });
const nonce = () => Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('base64url');

async function bytesOf(stream: ReadableStream<Uint8Array>): Promise<Uint8Array<ArrayBuffer>> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

test.serial('encrypted query: upload to the attested session key, run on decrypted rows, open the sealed result', async (t) => {
  const session = await stack.call('POST', '/api/tee/sessions', OWNER, { name: 'encrypted', participant_emails: [ANALYST], approval_policy: 'none' });
  t.is(session.status, 201);
  const id: string = session.body.id;
  const ownerKeys = await stack.registerKeys(id, OWNER);
  const analystKeys = await stack.registerKeys(id, ANALYST);

  // 1. The session key, attested: the worker made it on first request.
  const n = nonce();
  const relayed = await stack.call('POST', `/api/tee/sessions/${id}/session-key`, OWNER, { nonce: n });
  t.is(relayed.status, 200);
  const sessionKey = await verifySessionKeyBundle(relayed.body, { sessionId: id, nonce: n, policy: policy() });
  t.true(existsSync(join(stack.objectsDir, objectKeys.sessionKey(id, 1))));
  const second = await stack.call('POST', `/api/tee/sessions/${id}/session-key`, ANALYST, { nonce: nonce() });
  t.is(second.body.thumbprint, sessionKey.thumbprint, 'one key per session');

  // 2. Encrypt a CSV to it, upload, register.
  const rows = Array.from({ length: 100 }, (_, i) => `${i},${i % 3 === 0 ? 'north' : 'south'}`);
  const plaintext = new TextEncoder().encode(`x,region\n${rows.join('\n')}\n`);
  const datasetId = crypto.randomUUID();
  const schema = [
    { name: 'x', type: 'INTEGER' as const },
    { name: 'region', type: 'VARCHAR' as const },
  ];
  const key = generateDataKey();
  const ciphertext = await bytesOf(
    encryptDataset({
      header: { session_id: id, dataset_id: datasetId, owner_email: OWNER, table: 'sales', format: 'csv', schema, row_count: 100, plaintext_bytes: plaintext.byteLength },
      key,
      plaintext: new Blob([plaintext]).stream(),
      aead: nodeAead,
    }),
  );
  const sha = Buffer.from(await crypto.subtle.digest('SHA-256', ciphertext)).toString('hex');
  const ticket = await stack.call('POST', `/api/tee/sessions/${id}/datasets/uploads`, OWNER, { dataset_id: datasetId, ciphertext_bytes: ciphertext.byteLength });
  t.is(ticket.status, 201, JSON.stringify(ticket.body));
  const put = await fetch(ticket.body.url, { method: ticket.body.method, headers: ticket.body.headers, body: ciphertext });
  t.true(put.ok, `upload answered ${put.status}`);
  const registered = await stack.call('POST', `/api/tee/sessions/${id}/datasets`, OWNER, {
    dataset_id: datasetId,
    table: 'sales',
    format: 'csv',
    schema,
    row_count: 100,
    ciphertext_bytes: ciphertext.byteLength,
    ciphertext_sha256: sha,
    wrapped_key: await wrapDataKey({ key, sessionPublicJwk: sessionKey.publicJwk, sessionId: id, datasetId }),
    session_key_thumbprint: sessionKey.thumbprint,
  });
  t.is(registered.status, 201, JSON.stringify(registered.body));

  // 3. A query over it, sealed to both recipients.
  const q = await stack.call('POST', `/api/tee/sessions/${id}/queries`, OWNER, {
    sql: 'SELECT region, count(*) AS n, sum(x) AS s FROM sales GROUP BY region ORDER BY region',
    recipients: [OWNER, ANALYST],
  });
  t.is(q.status, 201, JSON.stringify(q.body));
  const done = await stack.waitFor(id, q.body.id, OWNER, ['SUCCEEDED', 'FAILED']);
  t.is(done.status, 'SUCCEEDED', String(done.error_code));
  t.is(done.result_ref, `object:${objectKeys.result(id, q.body.id)}`);

  const fetched = await stack.call('GET', `/api/tee/sessions/${id}/queries/${q.body.id}/result`, ANALYST);
  t.is(fetched.status, 200);
  const verifyIdentity = receiptIdentityVerifier({ policy: policy() });
  for (const keys of [ownerKeys, analystKeys]) {
    const opened = await openSealedResult({ sealed: fetched.body, recipientPrivateKey: keys.encryptionPrivateKey, expect: { sessionId: id, queryId: q.body.id }, verifyIdentity });
    t.deepEqual(opened.rows, [
      ['north', '34', '1683'],
      ['south', '66', '3267'],
    ]);
    t.deepEqual(opened.receipt.inputs, [{ dataset_id: datasetId, ciphertext_sha256: sha }]);
    t.deepEqual(opened.receipt.recipients, [ANALYST, OWNER].sort());
    t.is(opened.receipt.image_digest, DEV_WORKER_DIGEST);
  }
});
