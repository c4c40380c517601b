import test from 'ava';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRemoteJWKSet, exportJWK, generateKeyPair, jwtVerify } from 'jose';
import { objectKeys } from '../../../protocol/dataset.ts';
import { jwkThumbprint, keyBindingNonce } from '../../../protocol/key-binding.ts';
import { verifySessionKeyRequestJws } from '../../../protocol/task-verify.ts';
import { DEV_ISSUER } from '../../../functions/adapters/identity/dev-idp.ts';
import { CONTROL_PLANE_EMAIL, OBJECTS_DIR, TASK_PUBLIC_KEYS_FILE, UPLOAD_SECRET_FILE, startLocalStack, type LocalStack } from '../../../functions/local/stack.ts';

/**
 * A stand-in for the worker's `POST /session-keys`: it checks what the real one checks of the
 * caller (a dev identity provider token of the control plane) and the request (a session key
 * request JWS signed with the published task key), then answers a bundle for that session.
 */
async function tinyWorker(dataDir: string, apiUrl: () => string) {
  const checks: Array<{ bearer: string; session_id: string; nonce: string }> = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => (body += String(chunk)));
    req.on('end', async () => {
      try {
        if (req.url !== '/session-keys') throw new Error(`unexpected ${req.method} ${req.url}`);
        const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
        if (!bearer) throw new Error('no bearer token');
        const { payload: caller } = await jwtVerify(bearer, createRemoteJWKSet(new URL('/dev-idp/jwks.json', apiUrl())), { issuer: DEV_ISSUER });
        if (caller.email !== CONTROL_PLANE_EMAIL) throw new Error('not the control plane');
        const keys = JSON.parse(readFileSync(join(dataDir, TASK_PUBLIC_KEYS_FILE), 'utf8')).keys;
        const request = await verifySessionKeyRequestJws(body, { keys });
        checks.push({ bearer, session_id: request.session_id, nonce: request.nonce });
        const { publicKey } = await generateKeyPair('ECDH-ES', { crv: 'P-256', extractable: true });
        const { publicKey: identity } = await generateKeyPair('ES256', { extractable: true });
        const { x, y } = await exportJWK(publicKey);
        const id = await exportJWK(identity);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            session_id: request.session_id,
            epoch: 1,
            public_jwk: { kty: 'EC', crv: 'P-256', x, y },
            thumbprint: 'T'.repeat(43),
            certificate: 'c.e.rt',
            identity_jwk: { kty: 'EC', crv: 'P-256', x: id.x, y: id.y },
            attestation: 'a.tt.est',
            attestation_kind: 'dev',
          }),
        );
      } catch (error) {
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { code: 'TASK_UNAUTHENTICATED', message: String(error) } }));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, checks, server };
}

async function call(stack: LocalStack, method: string, path: string, token: string, body?: unknown) {
  const res = await fetch(`${stack.apiUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as any };
}

async function registerKeys(stack: LocalStack, sid: string, email: string) {
  const pub = async (alg: 'ES256' | 'ECDH-ES') => {
    const { x, y } = await exportJWK((await generateKeyPair(alg, { crv: 'P-256', extractable: true })).publicKey);
    return { kty: 'EC', crv: 'P-256', x: x!, y: y! };
  };
  const signing_jwk = { ...(await pub('ES256')), alg: 'ES256', use: 'sig' };
  const encryption_jwk = { ...(await pub('ECDH-ES')), alg: 'ECDH-ES+A256KW', use: 'enc' };
  const nonce = await keyBindingNonce(await jwkThumbprint(signing_jwk), await jwkThumbprint(encryption_jwk));
  const binding_token = (await stack.devIdp.issue(email, { nonce })).token;
  const res = await call(stack, 'PUT', `/api/tee/sessions/${sid}/participants/me/keys`, (await stack.devIdp.issue(email)).token, {
    signing_jwk,
    encryption_jwk,
    binding_token,
  });
  if (res.status !== 200) throw new Error(JSON.stringify(res.body));
}

test('stack: session key relay to the worker, upload over real HTTP to the signed URL, registration, and shredding at close', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'cleanroom-stack-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  let stack: LocalStack | undefined;
  const worker = await tinyWorker(dataDir, () => stack!.apiUrl);
  t.teardown(() => (worker.server.close(), worker.server.closeAllConnections()));
  stack = await startLocalStack({ dataDir, apiPort: 0, workerUrl: worker.url, maxDatasetBytes: 1_000_000, reconcileEveryMs: 3_600_000 });
  t.teardown(() => stack!.close());
  t.is(stack.objectsDir, join(dataDir, OBJECTS_DIR));
  t.is(statSync(join(dataDir, UPLOAD_SECRET_FILE)).mode & 0o777, 0o600);

  const alice = (await stack.devIdp.issue('alice@example.com')).token;
  const created = await call(stack, 'POST', '/api/tee/sessions', alice, { name: 'stack', approval_policy: 'none' });
  const sid = created.body.id as string;
  await registerKeys(stack, sid, 'alice@example.com');

  const nonce = 'participant-nonce-0123456789';
  const bundle = await call(stack, 'POST', `/api/tee/sessions/${sid}/session-key`, alice, { nonce });
  t.is(bundle.status, 200, JSON.stringify(bundle.body));
  t.is(bundle.body.session_id, sid);
  t.is(worker.checks.length, 1);
  t.like(worker.checks[0], { session_id: sid, nonce });

  const ciphertext = new Uint8Array(Buffer.concat([0, 1, 2, 3].map(() => crypto.getRandomValues(new Uint8Array(50_000)))));
  const datasetId = crypto.randomUUID();
  const ticket = await call(stack, 'POST', `/api/tee/sessions/${sid}/datasets/uploads`, alice, { dataset_id: datasetId, ciphertext_bytes: ciphertext.byteLength });
  t.is(ticket.status, 201);
  t.true(ticket.body.url.startsWith(`${stack.apiUrl}/objects/`));
  const put = await fetch(ticket.body.url, { method: 'PUT', headers: ticket.body.headers, body: ciphertext });
  t.is(put.status, 201);
  const file = join(stack.objectsDir, objectKeys.dataset(sid, datasetId));
  t.deepEqual(new Uint8Array(readFileSync(file)), ciphertext);
  t.is(statSync(file).mode & 0o777, 0o600);
  const sha = Buffer.from(await crypto.subtle.digest('SHA-256', ciphertext)).toString('hex');
  const registered = await call(stack, 'POST', `/api/tee/sessions/${sid}/datasets`, alice, {
    dataset_id: datasetId,
    table: 'sales',
    format: 'parquet',
    schema: [{ name: 'email', type: 'VARCHAR' }],
    row_count: 10,
    ciphertext_bytes: ciphertext.byteLength,
    ciphertext_sha256: sha,
    wrapped_key: 'a.b.c.d.e',
    session_key_thumbprint: 'T'.repeat(43),
  });
  t.is(registered.status, 201, JSON.stringify(registered.body));
  t.is((await call(stack, 'GET', `/api/tee/sessions/${sid}/datasets`, alice)).body.datasets[0].id, datasetId);
  // Over the configured cap.
  const big = await call(stack, 'POST', `/api/tee/sessions/${sid}/datasets/uploads`, alice, { dataset_id: crypto.randomUUID(), ciphertext_bytes: 1_000_001 });
  t.is(big.body.error.code, 'DATASET_TOO_LARGE');

  t.is((await call(stack, 'DELETE', `/api/tee/sessions/${sid}`, alice)).status, 200);
  t.false(existsSync(file));
  t.false(existsSync(join(stack.objectsDir, objectKeys.datasetPrefix(sid))));
});

test('stack: the upload secret survives a restart, so a URL signed before it still works after', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'cleanroom-stack-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const first = await startLocalStack({ dataDir, apiPort: 0 });
  const alice = (await first.devIdp.issue('alice@example.com')).token;
  const sid = (await call(first, 'POST', '/api/tee/sessions', alice, { name: 'restart' })).body.id as string;
  await registerKeys(first, sid, 'alice@example.com');
  const datasetId = crypto.randomUUID();
  const ticket = await call(first, 'POST', `/api/tee/sessions/${sid}/datasets/uploads`, alice, { dataset_id: datasetId, ciphertext_bytes: 10 });
  const secret = readFileSync(join(dataDir, UPLOAD_SECRET_FILE), 'utf8');
  const port = new URL(first.apiUrl).port;
  await first.close();
  const second = await startLocalStack({ dataDir, apiPort: Number(port) });
  t.teardown(() => second.close());
  t.is(readFileSync(join(dataDir, UPLOAD_SECRET_FILE), 'utf8'), secret);
  const put = await fetch(ticket.body.url, { method: 'PUT', body: new Uint8Array(10) });
  t.is(put.status, 201);
  t.true(existsSync(join(second.objectsDir, objectKeys.dataset(sid, datasetId))));
});
