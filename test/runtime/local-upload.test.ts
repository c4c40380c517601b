import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalObjectStore } from '../../runtime/object-store/local.ts';
import { LocalUploadSigner, generateUploadSecret, handleLocalUpload } from '../../runtime/object-store/local-upload.ts';
import { toNodeListener } from '../../runtime/node-http.ts';
import { readAll, streamOf } from './object-store.contract.ts';

const root = mkdtempSync(join(tmpdir(), 'local-upload-'));
test.after.always(() => rmSync(root, { recursive: true, force: true }));

const BASE = 'http://127.0.0.1:3000';
const T0 = new Date('2030-01-01T00:00:00.000Z');
const KEY = 'datasets/3f1c0c8e-0000-4000-8000-000000000001/9a1c0c8e-0000-4000-8000-000000000002.crds';

function setup(now = T0) {
  const secret = generateUploadSecret();
  const store = new LocalObjectStore(join(root, crypto.randomUUID()));
  const signer = new LocalUploadSigner({ baseUrl: BASE, secret, now: () => now });
  let clock = now;
  const handle = (request: Request) => handleLocalUpload(request, { store, secret, now: () => clock });
  return { secret, store, signer, handle, setClock: (date: Date) => (clock = date) };
}

function put(url: string, body: Uint8Array | ReadableStream<Uint8Array>, init: { method?: string; headers?: Record<string, string> } = {}): Request {
  const streamed = body instanceof ReadableStream;
  return new Request(url, { method: init.method ?? 'PUT', headers: init.headers, body, ...(streamed ? { duplex: 'half' } : {}) } as RequestInit);
}

async function expectError(t: ExecutionContext, response: Response, status: number, code: string): Promise<void> {
  t.is(response.status, status);
  t.regex(response.headers.get('content-type') ?? '', /^application\/json/);
  const body = (await response.json()) as { error: { code: string; message: string } };
  t.is(body.error.code, code);
  t.is(typeof body.error.message, 'string');
}

test('local upload signer: a PUT URL under /objects/ naming key, expiry and cap; no headers to send', async (t) => {
  const { signer } = setup();
  const signed = await signer.signUpload(KEY, { expiresInSeconds: 900, maxBytes: 1_000_000 });
  const url = new URL(signed.url);
  t.is(`${url.origin}${url.pathname}`, `${BASE}/objects/${KEY}`);
  t.is(url.searchParams.get('expires'), String(T0.getTime() / 1000 + 900));
  t.is(url.searchParams.get('max'), '1000000');
  t.regex(url.searchParams.get('sig')!, /^[A-Za-z0-9_-]{43}$/);
  t.is(signed.method, 'PUT');
  t.deepEqual(signed.headers, {});
  t.deepEqual(signed.expiresAt, new Date(T0.getTime() + 900_000));
  // A trailing slash on the base does not double the slash.
  const other = new LocalUploadSigner({ baseUrl: `${BASE}/`, secret: generateUploadSecret(), now: () => T0 });
  t.true((await other.signUpload(KEY, { expiresInSeconds: 60, maxBytes: 1 })).url.startsWith(`${BASE}/objects/datasets/`));
});

test('local upload: a signed PUT stores the body create-only and answers 201 with key, size, generation', async (t) => {
  const { signer, store, handle } = setup();
  const bytes = randomBytes(200_000);
  const { url } = await signer.signUpload(KEY, { expiresInSeconds: 900, maxBytes: 1_000_000 });
  const response = await handle(put(url, streamOf(bytes, { chunkBytes: 10_000 })));
  t.is(response.status, 201);
  const body = await response.json();
  t.deepEqual(body, { key: KEY, size: 200_000, generation: (await store.stat(KEY))!.generation });
  t.true(Buffer.from(await readAll((await store.read(KEY))!)).equals(bytes));
  // The same URL again: the object exists, and it keeps the first bytes.
  await expectError(t, await handle(put(url, randomBytes(10))), 412, 'OBJECT_EXISTS');
  t.is((await store.stat(KEY))!.size, 200_000);
});

test('local upload: the URL works until its expiry second and not from then on', async (t) => {
  const { signer, handle, setClock } = setup();
  const a = await signer.signUpload(`${KEY}.a`, { expiresInSeconds: 60, maxBytes: 10 });
  const b = await signer.signUpload(`${KEY}.b`, { expiresInSeconds: 60, maxBytes: 10 });
  setClock(new Date(T0.getTime() + 59_999));
  t.is((await handle(put(a.url, randomBytes(5)))).status, 201);
  setClock(new Date(T0.getTime() + 60_000));
  await expectError(t, await handle(put(b.url, randomBytes(5))), 403, 'UPLOAD_URL_INVALID');
});

// Every way of changing a signed URL, each refused with the same code.
const tampering: Array<[string, (url: URL) => string]> = [
  ['another key', (u) => u.href.replace('.crds', '.crdx')],
  ['a key one level up', (u) => u.href.replace(/\/[^/?]+\.crds/, '.crds')],
  ['a larger max', (u) => (u.searchParams.set('max', '2000000'), u.href)],
  ['a later expiry', (u) => (u.searchParams.set('expires', String(Number(u.searchParams.get('expires')) + 1)), u.href)],
  ['the last signature character changed', (u) => (u.searchParams.set('sig', flipLast(u.searchParams.get('sig')!)), u.href)],
  ['the first signature character changed', (u) => (u.searchParams.set('sig', flipFirst(u.searchParams.get('sig')!)), u.href)],
  ['a signature from another secret', (u) => (u.searchParams.set('sig', randomBytes(32).toString('base64url')), u.href)],
  ['a padded signature', (u) => (u.searchParams.set('sig', `${u.searchParams.get('sig')}=`), u.href)],
  ['no signature', (u) => (u.searchParams.delete('sig'), u.href)],
  ['no max', (u) => (u.searchParams.delete('max'), u.href)],
  ['no expiry', (u) => (u.searchParams.delete('expires'), u.href)],
  ['a second max', (u) => (u.searchParams.append('max', '2000000'), u.href)],
  ['a negative max', (u) => (u.searchParams.set('max', '-1'), u.href)],
  ['a fractional expiry', (u) => (u.searchParams.set('expires', `${u.searchParams.get('expires')}.5`), u.href)],
  ['a percent-encoded key', (u) => u.href.replace('datasets/', 'datasets%2F')],
  ['a dot-dot key', (u) => u.href.replace('/objects/datasets/', '/objects/datasets/%2E%2E/')],
];
for (const [name, tamper] of tampering) {
  test(`local upload: a URL with ${name} is 403 UPLOAD_URL_INVALID and stores nothing`, async (t) => {
    const { signer, store, handle } = setup();
    const { url } = await signer.signUpload(KEY, { expiresInSeconds: 900, maxBytes: 1_000_000 });
    const tampered = tamper(new URL(url));
    t.not(tampered, url);
    await expectError(t, await handle(put(tampered, randomBytes(10))), 403, 'UPLOAD_URL_INVALID');
    t.is(await store.stat(KEY), null);
  });
}

function flipLast(sig: string): string {
  // 'A' and 'B' differ only in a bit that base64url of 32 bytes does not use.
  return sig.slice(0, -1) + (sig.endsWith('A') ? 'B' : 'A');
}
function flipFirst(sig: string): string {
  return (sig.startsWith('A') ? 'B' : 'A') + sig.slice(1);
}

test('local upload: a URL signed with another secret is refused', async (t) => {
  const { handle } = setup();
  const foreign = new LocalUploadSigner({ baseUrl: BASE, secret: generateUploadSecret(), now: () => T0 });
  const { url } = await foreign.signUpload(KEY, { expiresInSeconds: 900, maxBytes: 100 });
  await expectError(t, await handle(put(url, randomBytes(10))), 403, 'UPLOAD_URL_INVALID');
});

test('local upload: methods other than PUT are 405 with Allow: PUT; paths outside /objects/ are 404', async (t) => {
  const { signer, handle } = setup();
  const { url } = await signer.signUpload(KEY, { expiresInSeconds: 900, maxBytes: 100 });
  for (const method of ['POST', 'PATCH', 'DELETE']) {
    const response = await handle(put(url, randomBytes(1), { method }));
    t.is(response.headers.get('allow'), 'PUT');
    await expectError(t, response, 405, 'METHOD_NOT_ALLOWED');
  }
  await expectError(t, await handle(new Request(url)), 405, 'METHOD_NOT_ALLOWED');
  await expectError(t, await handle(put(url.replace('/objects/', '/object/'), randomBytes(1))), 404, 'ROUTE_NOT_FOUND');
});

test('local upload: a declared Content-Length over the cap is 413 before a byte is read', async (t) => {
  const { signer, store, handle } = setup();
  const { url } = await signer.signUpload(KEY, { expiresInSeconds: 900, maxBytes: 100 });
  let pulled = 0;
  const body = new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        pulled++;
        controller.enqueue(randomBytes(101));
        controller.close();
      },
    },
    { highWaterMark: 0 },
  ); // pulled only when someone reads
  await expectError(t, await handle(put(url, body, { headers: { 'content-length': '101' } })), 413, 'DATASET_TOO_LARGE');
  t.is(pulled, 0);
  t.is(await store.stat(KEY), null);
});

test('local upload: a body that grows past the cap without declaring it is 413 and nothing is stored', async (t) => {
  const { signer, store, handle } = setup();
  const { url } = await signer.signUpload(KEY, { expiresInSeconds: 900, maxBytes: 50_000 });
  await expectError(t, await handle(put(url, streamOf(randomBytes(80_000), { chunkBytes: 4096 }))), 413, 'DATASET_TOO_LARGE');
  t.is(await store.stat(KEY), null);
  // The key is still free for a body within the cap.
  t.is((await handle(put(url, randomBytes(50_000)))).status, 201);
});

test('local upload: a sender that breaks off is 400 and nothing is stored', async (t) => {
  const { signer, store, handle } = setup();
  const { url } = await signer.signUpload(KEY, { expiresInSeconds: 900, maxBytes: 50_000 });
  await expectError(t, await handle(put(url, streamOf(randomBytes(40_000), { chunkBytes: 4096, failAfter: 8192 }))), 400, 'VALIDATION_FAILED');
  t.is(await store.stat(KEY), null);
});

test('local upload: over node:http, an oversized Content-Length is refused without sending the body', async (t) => {
  const { signer, store, handle } = setup();
  const server = createServer(toNodeListener(handle));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  const { port } = server.address() as AddressInfo;
  const { url } = await signer.signUpload(KEY, { expiresInSeconds: 900, maxBytes: 1000 });
  const path = new URL(url).pathname + new URL(url).search;
  const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    // Headers only: the answer must come although no byte of the 10 MB follows.
    const req = httpRequest({ host: '127.0.0.1', port, method: 'PUT', path, headers: { 'content-length': String(10 * 1024 * 1024) } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.flushHeaders();
  });
  t.is(status, 413);
  t.is(JSON.parse(body).error.code, 'DATASET_TOO_LARGE');
  t.is(await store.stat(KEY), null);

  // And a real upload through the same server.
  const ok = await fetch(`http://127.0.0.1:${port}${path}`, { method: 'PUT', body: randomBytes(1000) });
  t.is(ok.status, 201);
  t.is((await store.stat(KEY))!.size, 1000);
});

test('local upload: misuse is a TypeError', async (t) => {
  t.throws(() => new LocalUploadSigner({ baseUrl: BASE, secret: new Uint8Array(16) }), { instanceOf: TypeError });
  t.throws(() => new LocalUploadSigner({ baseUrl: 'not a url', secret: generateUploadSecret() }), { instanceOf: TypeError });
  const { signer } = setup();
  await t.throwsAsync(signer.signUpload('../x', { expiresInSeconds: 60, maxBytes: 1 }), { instanceOf: TypeError });
  await t.throwsAsync(signer.signUpload(KEY, { expiresInSeconds: 0, maxBytes: 1 }), { instanceOf: TypeError });
  await t.throwsAsync(signer.signUpload(KEY, { expiresInSeconds: 7 * 24 * 3600 + 1, maxBytes: 1 }), { instanceOf: TypeError });
  await t.throwsAsync(signer.signUpload(KEY, { expiresInSeconds: 60, maxBytes: -1 }), { instanceOf: TypeError });
  await t.throwsAsync(signer.signUpload(KEY, { expiresInSeconds: 60, maxBytes: 1.5 }), { instanceOf: TypeError });
});

test('generateUploadSecret: 32 random bytes', (t) => {
  const a = generateUploadSecret();
  t.is(a.byteLength, 32);
  t.notDeepEqual(a, generateUploadSecret());
});
