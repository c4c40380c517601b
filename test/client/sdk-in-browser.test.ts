import test from 'ava';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { stripTypeScriptTypes } from 'node:module';
import { extname, join, normalize, resolve } from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';
import { attestationNonce } from '../../protocol/attestation.ts';
import { unwrapDataKey } from '../../protocol/data-key.ts';
import { RECEIPT_NONCE } from '../../protocol/dataset.ts';
import { decryptDataset } from '../../protocol/dataset-format.ts';
import { sealResult } from '../../protocol/sealed-result.ts';
import { nodeAead } from '../../runtime/aead-node.ts';
import { DevAttester } from '../../enclave-worker/attestation/dev.ts';
import { createWorkerIdentity } from '../../enclave-worker/identity.ts';

/**
 * The SDK in a real browser (headless Chromium through playwright-core): its TypeScript is served
 * with only the types stripped (node:module), `jose` and `valibot` from node_modules by an import
 * map; no bundler, no Node API. In the page, `uploadDataset` describes a CSV, wraps a data key to
 * a session key, encrypts with WebCrypto and streams the ciphertext to the upload URL with the
 * page's own fetch; Node then decrypts it. `getResult` opens a result Node sealed to a key the
 * page generated, checking the receipt's dev attestation against this server's dev issuer.
 */

const BROWSER = '/usr/bin/chromium-headless-shell';
const REPO = resolve(import.meta.dirname, '../..');
const CSV = 'id,email,amount,day\n1,a@x.example,10.5,2026-01-02\n2,"b, c@y.example",,2026-01-03\n3,d@z.example,7,2026-02-01\n';
const SESSION = 'browser-session';

if (!existsSync(BROWSER) && process.env.CI === 'true') {
  // CI's .ci/run installs it: a missing browser there is a broken CI machine, not a skip.
  test(`sdk in a browser: ${BROWSER} is installed in CI`, (t) => t.fail(`${BROWSER} is missing; .ci/run installs chromium-headless-shell`));
} else if (!existsSync(BROWSER)) {
  console.warn(`SKIPPED: ${BROWSER} not installed (apt-get install -y chromium-headless-shell)`);
  test.skip(`sdk in a browser: SKIPPED, ${BROWSER} is not installed`, () => {});
} else {
  const session = await generateKeyPair('ECDH-ES+A256KW', { crv: 'P-256' });
  const sessionPublic = await exportJWK(session.publicKey);
  const sessionThumbprint = await calculateJwkThumbprint(sessionPublic);
  const uploads: Buffer[] = [];
  let server: Server;
  let origin = '';

  /** The SDK's sources as JavaScript, node_modules for its three dependencies, the page, the upload URL and the dev issuer. */
  const routes = async (method: string, path: string, body: Buffer): Promise<{ status: number; type?: string; body: string | Buffer }> => {
    if (method === 'PUT' && path === '/upload') {
      uploads.push(body);
      return { status: 201, type: 'application/json', body: '{}' };
    }
    if (path === '/') return { status: 200, type: 'text/html', body: PAGE };
    if (path.startsWith('/dev-attestation/')) {
      const document = path.endsWith('/jwks') ? attester.jwks() : attester.openidConfiguration();
      return { status: 200, type: 'application/json', body: JSON.stringify(document) };
    }
    const file = normalize(join(REPO, path));
    const allowed = ['protocol/', 'client/sdk/', 'node_modules/jose/dist/webapi/', 'node_modules/valibot/dist/', 'node_modules/@noble/hashes/'].some((dir) => file.startsWith(join(REPO, dir)));
    if (!allowed || !existsSync(file)) return { status: 404, body: 'not found' };
    const source = readFileSync(file, 'utf8');
    const code = extname(file) === '.ts' ? stripTypeScriptTypes(source, { mode: 'strip' }) : source;
    return { status: 200, type: 'text/javascript', body: code };
  };

  const PAGE = `<!doctype html><script type="importmap">${JSON.stringify({
    imports: { jose: '/node_modules/jose/dist/webapi/index.js', valibot: '/node_modules/valibot/dist/index.mjs', '@noble/hashes/': '/node_modules/@noble/hashes/' },
  })}</script><script type="module">
    import { uploadDataset } from '/client/sdk/dataset-upload.ts';
    import { getResult } from '/client/sdk/result.ts';
    import { generateParticipantKeys, importEncryptionKey } from '/client/sdk/participant-keys.ts';
    window.sdk = { uploadDataset, getResult, generateParticipantKeys, importEncryptionKey };
    window.ready = true;
  </script>`;

  // The dev issuer is this server, as a worker's is at its own URL; made once the port is known.
  let attester: DevAttester;

  test.before(async () => {
    server = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        void routes(request.method ?? 'GET', new URL(request.url ?? '/', 'http://x').pathname, Buffer.concat(chunks)).then((answer) => {
          response.writeHead(answer.status, answer.type ? { 'content-type': answer.type } : {});
          response.end(answer.body);
        });
      });
    });
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    attester = await DevAttester.create({ issuer: `${origin}/dev-attestation`, imageDigest: `sha256:${'ab'.repeat(32)}` });
  });
  test.after.always(() => server?.close());

  async function withPage<T>(run: (page: import('playwright-core').Page) => Promise<T>): Promise<T> {
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({ executablePath: BROWSER, args: ['--no-sandbox'] });
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (error) => errors.push(String(error)));
      await page.goto(`${origin}/`);
      await page
        .waitForFunction(() => (window as unknown as { ready?: boolean }).ready === true, undefined, { timeout: 20_000 })
        .catch((cause) => {
          throw new Error(`the SDK did not load in the browser: ${errors.join('; ')}`, { cause });
        });
      return await run(page);
    } finally {
      await browser.close();
    }
  }

  test('sdk in a browser: uploadDataset encrypts with WebCrypto and streams ciphertext the worker side decrypts', async (t) => {
    uploads.length = 0;
    const sessionKey = { sessionId: SESSION, epoch: 1, publicJwk: { ...sessionPublic, alg: 'ECDH-ES+A256KW', use: 'enc' }, thumbprint: sessionThumbprint };
    const registered = await withPage((page) =>
      page.evaluate(
        async ({ csv, sessionKey, origin }) => {
          const w = window as unknown as { sdk: any };
          let registration: any;
          const api = {
            createUpload: async (_sid: string, body: { dataset_id: string; ciphertext_bytes: number }) => ({
              dataset_id: body.dataset_id,
              object_key: `datasets/x/${body.dataset_id}.crds`,
              url: `${origin}/upload`,
              method: 'PUT',
              headers: {},
              expires_at: new Date(Date.now() + 60_000).toISOString(),
              max_bytes: body.ciphertext_bytes,
            }),
            registerDataset: async (_sid: string, body: any) => {
              registration = body;
              return { id: body.dataset_id, table: body.table };
            },
          };
          const bytes = new TextEncoder().encode(csv);
          await w.sdk.uploadDataset({
            api,
            sessionId: sessionKey.sessionId,
            table: 'customers',
            format: 'csv',
            openFile: () => new Blob([bytes]).stream(),
            sessionKey,
            ownerEmail: 'owner@example.com',
          });
          return registration;
        },
        { csv: CSV, sessionKey, origin },
      ),
    );
    t.is(uploads.length, 1);
    const ciphertext = uploads[0]!;
    t.false(ciphertext.includes(Buffer.from('a@x.example')), 'the upload is ciphertext');
    t.is(registered.ciphertext_sha256, createHash('sha256').update(ciphertext).digest('hex'));
    t.is(registered.ciphertext_bytes, ciphertext.byteLength);
    t.is(registered.row_count, 3);
    t.deepEqual(
      registered.schema.map((c: { type: string }) => c.type),
      ['INTEGER', 'VARCHAR', 'DECIMAL(3,1)', 'DATE'],
    );
    t.deepEqual(registered.csv, { delimiter: ',', quote: '"', escape: '"', header: true });
    const key = await unwrapDataKey({
      jwe: registered.wrapped_key,
      sessionPrivateKey: session.privateKey,
      sessionId: SESSION,
      datasetId: registered.dataset_id,
      sessionKeyThumbprint: sessionThumbprint,
    });
    const { plaintext } = decryptDataset({ key, ciphertext: new Blob([new Uint8Array(ciphertext)]).stream(), expect: { session_id: SESSION, dataset_id: registered.dataset_id }, aead: nodeAead });
    t.is(await new Response(plaintext).text(), CSV);
  });

  test('sdk in a browser: getResult opens a sealed result and verifies its receipt and the dev attestation', async (t) => {
    const identity = await createWorkerIdentity();
    const queryId = crypto.randomUUID();
    await withPage(async (page) => {
      const recipient = (await page.evaluate(async () => {
        const w = window as unknown as { sdk: any; keys?: unknown };
        const keys = await w.sdk.generateParticipantKeys();
        w.keys = keys;
        const { kty, crv, x, y } = keys.encryption;
        return { kty, crv, x, y };
      })) as JWK;
      const token = await attester.token({ audience: 'cleanroom-clients', nonces: [await attestationNonce(RECEIPT_NONCE, identity.thumbprint)] });
      const sealed = await sealResult({
        sessionId: SESSION,
        queryId,
        attempt: 1,
        sql: 'SELECT region, count(*) FROM customers GROUP BY region',
        inputs: [],
        result: {
          columns: [
            { name: 'region', type: 'VARCHAR' },
            { name: 'n', type: 'BIGINT' },
          ],
          rows: [
            ['north', '2'],
            ['south', '1'],
          ],
        },
        recipients: [{ email: 'owner@example.com', encryption_jwk: { kty: 'EC', crv: 'P-256', x: recipient.x!, y: recipient.y! } }],
        identity: { privateKey: identity.privateKey, publicJwk: identity.publicJwk },
        attestation: token,
        imageDigest: `sha256:${'ab'.repeat(32)}`,
      });
      const opened = await page.evaluate(
        async ({ sealed, sessionId, queryId, origin }) => {
          const w = window as unknown as { sdk: any; keys: unknown };
          const api = { getSealedResult: async () => sealed };
          const result = await w.sdk.getResult({
            api,
            sessionId,
            queryId,
            encryptionPrivateKey: await w.sdk.importEncryptionKey(w.keys),
            attestation: { workerUrl: origin, allowedImageDigests: [], allowInsecureDev: true, acceptDevClaimedDigest: true },
          });
          return { rows: result.rows, insecureDev: result.insecureDev, query: result.receipt.query_id };
        },
        { sealed, sessionId: SESSION, queryId, origin },
      );
      t.deepEqual(opened, {
        rows: [
          ['north', '2'],
          ['south', '1'],
        ],
        insecureDev: true,
        query: queryId,
      });
      // A result sealed to someone else does not open in the page.
      const stranger = await generateKeyPair('ECDH-ES+A256KW', { crv: 'P-256', extractable: true });
      const other = await exportJWK(stranger.publicKey);
      const foreign = await sealResult({
        ...{ sessionId: SESSION, queryId, attempt: 1, sql: 'x', inputs: [], result: { columns: [], rows: [] } },
        recipients: [{ email: 'someone@example.com', encryption_jwk: { kty: 'EC', crv: 'P-256', x: other.x!, y: other.y! } }],
        identity: { privateKey: identity.privateKey, publicJwk: identity.publicJwk },
        attestation: token,
        imageDigest: `sha256:${'ab'.repeat(32)}`,
      });
      const refused = await page.evaluate(
        async ({ sealed, sessionId, queryId, origin }) => {
          const w = window as unknown as { sdk: any; keys: unknown };
          try {
            await w.sdk.getResult({
              api: { getSealedResult: async () => sealed },
              sessionId,
              queryId,
              encryptionPrivateKey: await w.sdk.importEncryptionKey(w.keys),
              attestation: { workerUrl: origin, allowedImageDigests: [], allowInsecureDev: true, acceptDevClaimedDigest: true },
            });
            return 'opened';
          } catch (error) {
            return (error as { code?: string }).code ?? String(error);
          }
        },
        { sealed: foreign, sessionId: SESSION, queryId, origin },
      );
      t.is(refused, 'RESULT_TAMPERED');
    });
  });
}
