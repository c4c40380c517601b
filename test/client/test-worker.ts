import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DEV_ISSUER_PATH, DevAttester } from '../../enclave-worker/attestation/dev.ts';
import { createWorkerApp, type WorkerAppDeps } from '../../enclave-worker/http/app.ts';
import { createWorkerIdentity, type WorkerIdentity } from '../../enclave-worker/identity.ts';
import { attestationNonce } from '../../protocol/attestation.ts';
import { toNodeListener } from '../../runtime/node-http.ts';

/** The digest the test worker's dev attester claims. */
export const WORKER_DIGEST = `sha256:${'ab'.repeat(32)}`;

/**
 * How the test worker answers `/attestation`: `honest` as the real worker; `swap-key` presents
 * another identity key than the one the token binds; `replay` hands out the first token it
 * issued, whatever the nonce.
 */
export type WorkerMode = 'honest' | 'swap-key' | 'replay';

export interface TestWorker {
  /** `http://127.0.0.1:<port>`: the origin its dev attester names itself under. */
  url: string;
  port: number;
  identity: WorkerIdentity;
  mode: WorkerMode;
  /** How many tokens it issued. */
  issued: number;
  close(): Promise<void>;
}

/**
 * The worker's real HTTP surface (`createWorkerApp`) with the dev attester and an identity key
 * made now, on a free loopback port, and no executor behind it.
 */
export async function testWorker(mode: WorkerMode = 'honest', audience = 'cleanroom-clients'): Promise<TestWorker> {
  let handle: (request: Request) => Promise<Response> = async () => new Response('starting', { status: 503 });
  const server = createServer(toNodeListener((request) => handle(request)));
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const port = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}`;
  const attester = await DevAttester.create({ issuer: `${url}${DEV_ISSUER_PATH}`, imageDigest: WORKER_DIGEST });
  const identity = await createWorkerIdentity();
  const other = await createWorkerIdentity();
  let first: string | undefined;
  const worker: TestWorker = { url, port, identity, mode, issued: 0, close: () => stop(server) };
  const deps: WorkerAppDeps = {
    instanceId: 'test-worker',
    imageDigest: WORKER_DIGEST,
    identity,
    startedAt: Date.now(),
    async attest(nonce) {
      // The token always binds the worker's real key; `swap-key` then presents another one.
      deps.identity = worker.mode === 'swap-key' ? other : identity;
      const token = await attester.token({ audience, nonces: [await attestationNonce(nonce, identity.thumbprint)] });
      worker.issued++;
      first ??= token;
      return { token: worker.mode === 'replay' ? first : token, kind: attester.kind, expiresAt: null };
    },
    status: () => ({}),
    intake: async () => new Response(null, { status: 404 }),
    sessionKeys: async () => new Response(null, { status: 404 }),
    documents: {
      [attester.routes.openidConfiguration]: () => attester.openidConfiguration(),
      [attester.routes.jwks]: () => attester.jwks(),
    },
    // Every request its own bucket: the tests are not about the rate limit.
    clientKey: () => crypto.randomUUID(),
  };
  handle = createWorkerApp(deps);
  return worker;
}

function stop(server: Server): Promise<void> {
  return new Promise((done) => {
    server.close(() => done());
    server.closeAllConnections();
  });
}
