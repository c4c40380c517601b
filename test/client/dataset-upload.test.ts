import test from 'ava';
import { exportJWK, generateKeyPair } from 'jose';
import { CleanroomApi } from '../../client/sdk/api-client.ts';
import { uploadDataset, type UploadDatasetOptions } from '../../client/sdk/dataset-upload.ts';
import type { SessionKey } from '../../client/sdk/session-key.ts';
import { nodeAead, nodeSha256 } from '../../client/cli/node-crypto.ts';
import { unwrapDataKey } from '../../protocol/data-key.ts';
import { decryptDataset } from '../../protocol/dataset-format.ts';
import { CleanroomError } from '../../protocol/errors.ts';
import { jwkThumbprint } from '../../protocol/key-binding.ts';
import { createSha256, toHex } from '../../protocol/sha256.ts';

const SESSION = 'session-1';
const UPLOAD_URL = 'http://uploads.test/objects/datasets/session-1/x.crds?expires=1&max=1&sig=secret';

/** A session key pair made now; the SDK is handed the public half as if it had been verified. */
async function sessionKey(): Promise<{ key: SessionKey; privateKey: CryptoKey }> {
  const pair = await generateKeyPair('ECDH-ES+A256KW', { crv: 'P-256' });
  const { kty, crv, x, y } = await exportJWK(pair.publicKey);
  const thumbprint = await jwkThumbprint({ kty, crv, x, y });
  const key: SessionKey = {
    sessionId: SESSION,
    epoch: 1,
    publicJwk: { kty: kty!, crv: crv!, x: x!, y: y!, alg: 'ECDH-ES+A256KW', use: 'enc' },
    thumbprint,
    attestation: {} as SessionKey['attestation'],
    insecureDev: true,
    digestPinned: true,
  };
  return { key, privateKey: pair.privateKey };
}

function bytesStream(bytes: Uint8Array, size = 4096): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream({
    pull(controller) {
      if (offset >= bytes.byteLength) return controller.close();
      controller.enqueue(bytes.slice(offset, offset + size));
      offset += size;
    },
  });
}

/** The API and the upload URL in one fake: records what each was sent. */
function fakeBackend(options: { uploadStatus?: number; uploadBody?: unknown } = {}) {
  const seen = { ticketRequest: undefined as any, uploaded: undefined as Uint8Array | undefined, registration: undefined as any, putInit: undefined as any };
  const fetch = async (url: string, init: RequestInit): Promise<Response> => {
    const json = (body: unknown, status = 200) => new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
    if (url === UPLOAD_URL) {
      seen.putInit = init;
      seen.uploaded = new Uint8Array(await new Response(init.body).arrayBuffer());
      return json(options.uploadBody ?? { key: 'k', size: seen.uploaded.byteLength, generation: '1' }, options.uploadStatus ?? 201);
    }
    const path = new URL(url).pathname;
    const body = init.body === undefined ? undefined : JSON.parse(String(init.body));
    if (init.method === 'POST' && path === `/api/tee/sessions/${SESSION}/datasets/uploads`) {
      seen.ticketRequest = body;
      return json({ dataset_id: body.dataset_id, object_key: 'k', url: UPLOAD_URL, method: 'PUT', headers: {}, expires_at: new Date().toISOString(), max_bytes: body.ciphertext_bytes });
    }
    if (init.method === 'POST' && path === `/api/tee/sessions/${SESSION}/datasets`) {
      seen.registration = body;
      const { dataset_id: id, wrapped_key: _w, ...rest } = body;
      return json({ id, session_id: SESSION, owner_email: 'alice@example.com', created_at: new Date().toISOString(), ...rest }, 201);
    }
    return json({ error: { code: 'ROUTE_NOT_FOUND', message: 'no route' } }, 404);
  };
  const api = new CleanroomApi({ baseUrl: 'http://api.test', token: async () => 'token', fetch });
  return { api, fetch, seen };
}

const CSV = `id,region,amount\n${Array.from({ length: 3000 }, (_, i) => `${i},r${i % 5},${i * 1.25}`).join('\n')}\n`;

function options(backend: ReturnType<typeof fakeBackend>, key: SessionKey, overrides: Partial<UploadDatasetOptions> = {}): UploadDatasetOptions {
  const file = new TextEncoder().encode(CSV);
  return {
    api: backend.api,
    sessionId: SESSION,
    table: 'sales',
    format: 'csv',
    openFile: () => bytesStream(file),
    sessionKey: key,
    ownerEmail: 'alice@example.com',
    fetch: backend.fetch,
    chunkBytes: 64 * 1024,
    ...overrides,
  };
}

test('uploadDataset: the uploaded object decrypts with the data key unwrapped by the session key, to the exact file; registration matches it', async (t) => {
  const { key, privateKey } = await sessionKey();
  const backend = fakeBackend();
  const { dataset, description } = await uploadDataset(options(backend, key));
  const { seen } = backend;
  const uploaded = seen.uploaded!;

  t.is(seen.ticketRequest.ciphertext_bytes, uploaded.byteLength, 'the size asked for up front is the size sent');
  t.is(seen.registration.ciphertext_bytes, uploaded.byteLength);
  const hash = createSha256();
  hash.update(uploaded);
  t.is(seen.registration.ciphertext_sha256, toHex(hash.digest()));
  t.is(seen.registration.session_key_thumbprint, key.thumbprint);
  t.is(seen.registration.dataset_id, seen.ticketRequest.dataset_id);
  t.regex(seen.registration.dataset_id, /^[0-9a-f-]{36}$/);
  t.deepEqual(seen.registration.schema, [
    { name: 'id', type: 'INTEGER' },
    { name: 'region', type: 'VARCHAR' },
    // i * 1.25 is written with at most two decimals: an exact DECIMAL, not a DOUBLE.
    { name: 'amount', type: 'DECIMAL(6,2)' },
  ]);
  t.is(seen.registration.row_count, 3000);
  // The dialect is registered and bound into the authenticated header (version 2).
  t.deepEqual(seen.registration.csv, { delimiter: ',', quote: '"', escape: '"', header: true });
  t.is(seen.putInit.method, 'PUT');
  t.is(seen.putInit.duplex, 'half');
  t.is(seen.putInit.headers.authorization, undefined, 'no bearer token goes to the upload URL');
  t.is(dataset.table, 'sales');
  t.is(description.bytes, new TextEncoder().encode(CSV).byteLength);
  // Nothing the control plane sees holds the plaintext.
  t.false(JSON.stringify(seen.registration).includes('r3'));

  const dataKey = await unwrapDataKey({
    jwe: seen.registration.wrapped_key,
    sessionPrivateKey: privateKey,
    sessionId: SESSION,
    datasetId: seen.registration.dataset_id,
    sessionKeyThumbprint: key.thumbprint,
  });
  const decrypted = decryptDataset({ key: dataKey, ciphertext: bytesStream(uploaded), expect: { session_id: SESSION, dataset_id: seen.registration.dataset_id } });
  t.is(new TextDecoder().decode(await new Response(decrypted.plaintext).arrayBuffer()), CSV);
  t.like(await decrypted.header, { v: 2, owner_email: 'alice@example.com', table: 'sales', format: 'csv', csv: seen.registration.csv, row_count: 3000, session_id: SESSION });
});

test('uploadDataset: the node:crypto AEAD and hash produce an object the browser-safe decryptor opens', async (t) => {
  const { key, privateKey } = await sessionKey();
  const backend = fakeBackend();
  await uploadDataset(options(backend, key, { aead: nodeAead, hasher: nodeSha256 }));
  const { registration, uploaded } = backend.seen;
  const hash = createSha256();
  hash.update(uploaded!);
  t.is(registration.ciphertext_sha256, toHex(hash.digest()));
  const dataKey = await unwrapDataKey({ jwe: registration.wrapped_key, sessionPrivateKey: privateKey, sessionId: SESSION, datasetId: registration.dataset_id, sessionKeyThumbprint: key.thumbprint });
  const decrypted = decryptDataset({ key: dataKey, ciphertext: bytesStream(uploaded!), expect: { session_id: SESSION, dataset_id: registration.dataset_id } });
  t.is(new TextDecoder().decode(await new Response(decrypted.plaintext).arrayBuffer()), CSV);
});

test('uploadDataset: a file that changes between the describe and the encrypt pass is refused and nothing is registered', async (t) => {
  const { key } = await sessionKey();
  const backend = fakeBackend();
  let opened = 0;
  const error = await t.throwsAsync(uploadDataset(options(backend, key, { openFile: () => bytesStream(new TextEncoder().encode(opened++ === 0 ? CSV : `${CSV}9,r9,9\n`)) })));
  t.is((error as CleanroomError).code, 'DATASET_MALFORMED');
  t.is(backend.seen.registration, undefined);
});

test("uploadDataset: the upload URL's refusal keeps its code and nothing is registered", async (t) => {
  const { key } = await sessionKey();
  const backend = fakeBackend({ uploadStatus: 412, uploadBody: { error: { code: 'OBJECT_EXISTS', message: 'exists' } } });
  const error = await t.throwsAsync(uploadDataset(options(backend, key)));
  t.is((error as CleanroomError).code, 'OBJECT_EXISTS');
  t.is(backend.seen.registration, undefined);
});

test('uploadDataset: a bad table name is VALIDATION_FAILED before anything is sent; Parquet needs a describe function', async (t) => {
  const { key } = await sessionKey();
  const backend = fakeBackend();
  const error = await t.throwsAsync(uploadDataset(options(backend, key, { table: 'Bad-Name' })));
  t.is((error as CleanroomError).code, 'VALIDATION_FAILED');
  t.is(backend.seen.ticketRequest, undefined);
  await t.throwsAsync(uploadDataset(options(backend, key, { format: 'parquet' })), { instanceOf: TypeError });
});
