import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { calculateJwkThumbprint, createLocalJWKSet, exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import { ConfidentialSpaceAttester } from '../../../enclave-worker/attestation/confidential-space.ts';
import { attestationNonce, CONFIDENTIAL_SPACE_ISSUER, verifyAttestation } from '../../../protocol/attestation.ts';
import { CleanroomError } from '../../../protocol/errors.ts';

// A fake launcher: a real node:http server on a unix socket in a temp dir, as the
// Confidential Space launcher serves /run/container_launcher/teeserver.sock.

const google = await generateKeyPair('RS256', { extractable: true });
const googleJwk: JWK = { ...(await exportJWK(google.publicKey)), kid: 'g1', alg: 'RS256' };
const DIGEST = `sha256:${'ab'.repeat(32)}`;
const AUDIENCE = 'https://cleanroom.example/attestation';
const NONCE_A = 'a'.repeat(64);
const NONCE_B = 'b'.repeat(64);

interface Clock {
  seconds: number;
  now: () => Date;
}
const clock = (): Clock => {
  const c: Clock = { seconds: 1_900_000_000, now: () => new Date(c.seconds * 1000) };
  return c;
};

/** The token a launcher would mint for this request: string `eat_nonce` for one nonce, array otherwise. */
function mint(body: { audience: string; nonces: string[] }, iat: number, extra: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT({
    hwmodel: 'GCP_AMD_SEV',
    swname: 'CONFIDENTIAL_SPACE',
    dbgstat: 'disabled-since-boot',
    secboot: true,
    submods: { confidential_space: { support_attributes: ['STABLE'] }, container: { image_digest: DIGEST } },
    eat_nonce: body.nonces.length === 1 ? body.nonces[0] : body.nonces,
    ...extra,
  })
    .setProtectedHeader({ alg: 'RS256', kid: 'g1', typ: 'JWT' })
    .setIssuer(CONFIDENTIAL_SPACE_ISSUER)
    .setAudience(body.audience)
    .setSubject('instance')
    .setIssuedAt(iat)
    .setExpirationTime(iat + 3600)
    .sign(google.privateKey);
}

type Reply = (req: IncomingMessage, res: ServerResponse, body: string) => void | Promise<void>;

interface Launcher {
  socketPath: string;
  requests: Array<{ method?: string; url?: string; contentType?: string; body: string }>;
  reply: Reply;
}

async function fakeLauncher(t: { teardown(fn: () => unknown): void }, reply: Reply): Promise<Launcher> {
  const dir = mkdtempSync(join(tmpdir(), 'launcher-'));
  const launcher: Launcher = { socketPath: join(dir, 'teeserver.sock'), requests: [], reply };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      launcher.requests.push({ method: req.method, url: req.url, contentType: req.headers['content-type'], body });
      void launcher.reply(req, res, body);
    });
  });
  await new Promise<void>((resolve) => server.listen(launcher.socketPath, resolve));
  t.teardown(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });
  return launcher;
}

/** Answers like the launcher: the raw JWT as text/html, with a trailing newline. */
const honest =
  (c: Clock): Reply =>
  async (_req, res, body) => {
    const token = await mint(JSON.parse(body), c.seconds);
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(`${token}\n`);
  };

test('confidential-space: POSTs exactly {audience, nonces, token_type} to /v1/token and returns the trimmed JWT', async (t) => {
  const c = clock();
  const launcher = await fakeLauncher(t, honest(c));
  const attester = new ConfidentialSpaceAttester({ socketPath: launcher.socketPath, now: c.now });
  t.is(attester.kind, 'confidential-space');
  const token = await attester.token({ audience: AUDIENCE, nonces: [NONCE_A] });
  t.regex(token, /^[\w-]+\.[\w-]+\.[\w-]+$/);
  t.is(launcher.requests.length, 1);
  const [request] = launcher.requests;
  t.is(request!.method, 'POST');
  t.is(request!.url, '/v1/token');
  t.is(request!.contentType, 'application/json');
  t.deepEqual(JSON.parse(request!.body), { audience: AUDIENCE, nonces: [NONCE_A], token_type: 'OIDC' });
  t.deepEqual(Object.keys(JSON.parse(request!.body)).sort(), ['audience', 'nonces', 'token_type']);
});

test('confidential-space: an identical request reuses the token until 5 minutes remain, then refreshes', async (t) => {
  const c = clock();
  const launcher = await fakeLauncher(t, honest(c));
  const attester = new ConfidentialSpaceAttester({ socketPath: launcher.socketPath, now: c.now });
  const first = await attester.token({ audience: AUDIENCE, nonces: [NONCE_A] });
  c.seconds += 3600 - 301;
  t.is(await attester.token({ audience: AUDIENCE, nonces: [NONCE_A] }), first);
  t.is(launcher.requests.length, 1);
  c.seconds += 2; // now fewer than 300 s remain
  const second = await attester.token({ audience: AUDIENCE, nonces: [NONCE_A] });
  t.not(second, first);
  t.is(launcher.requests.length, 2);
});

test('confidential-space: other nonces or another audience are never served a cached token', async (t) => {
  const c = clock();
  const launcher = await fakeLauncher(t, honest(c));
  const attester = new ConfidentialSpaceAttester({ socketPath: launcher.socketPath, now: c.now });
  await attester.token({ audience: AUDIENCE, nonces: [NONCE_A] });
  await attester.token({ audience: AUDIENCE, nonces: [NONCE_B] });
  await attester.token({ audience: `${AUDIENCE}/other`, nonces: [NONCE_A] });
  await attester.token({ audience: AUDIENCE, nonces: [NONCE_A, NONCE_B] });
  t.is(launcher.requests.length, 4);
});

test('confidential-space: concurrent identical requests share one launcher call', async (t) => {
  const c = clock();
  const launcher = await fakeLauncher(t, honest(c));
  const attester = new ConfidentialSpaceAttester({ socketPath: launcher.socketPath, now: c.now });
  const tokens = await Promise.all(Array.from({ length: 5 }, () => attester.token({ audience: AUDIENCE, nonces: [NONCE_A] })));
  t.is(new Set(tokens).size, 1);
  t.is(launcher.requests.length, 1);
});

test('confidential-space: the cache stays bounded', async (t) => {
  const c = clock();
  const launcher = await fakeLauncher(t, honest(c));
  const attester = new ConfidentialSpaceAttester({ socketPath: launcher.socketPath, now: c.now, maxCachedTokens: 2 });
  const nonces = ['c', 'd', 'e'].map((ch) => ch.repeat(20));
  for (const nonce of nonces) await attester.token({ audience: AUDIENCE, nonces: [nonce] });
  await attester.token({ audience: AUDIENCE, nonces: [nonces[2]!] }); // newest: cached
  t.is(launcher.requests.length, 3);
  await attester.token({ audience: AUDIENCE, nonces: [nonces[0]!] }); // oldest: evicted
  t.is(launcher.requests.length, 4);
});

test('confidential-space: a 400 is ATTESTATION_UNAVAILABLE; the launcher text is only in the cause; nothing is cached', async (t) => {
  const launcher = await fakeLauncher(t, (_req, res) => void res.writeHead(400, { 'content-type': 'text/plain' }).end('unknown field "foo" in request body'));
  const attester = new ConfidentialSpaceAttester({ socketPath: launcher.socketPath });
  const error = await t.throwsAsync(attester.token({ audience: AUDIENCE, nonces: [NONCE_A] }), { instanceOf: CleanroomError });
  t.is(error.code, 'ATTESTATION_UNAVAILABLE');
  t.is(error.status, 503);
  t.is(error.retryAfter, 5);
  t.false(error.message.includes('unknown field'));
  t.false(JSON.stringify(error.toBody()).includes('unknown field'));
  t.true(String((error.cause as Error).message).includes('unknown field'));
  await t.throwsAsync(attester.token({ audience: AUDIENCE, nonces: [NONCE_A] }));
  t.is(launcher.requests.length, 2);
});

test('confidential-space: a launcher that never answers times out with ATTESTATION_UNAVAILABLE', async (t) => {
  const launcher = await fakeLauncher(t, () => {});
  const attester = new ConfidentialSpaceAttester({ socketPath: launcher.socketPath, timeoutMs: 200 });
  const started = Date.now();
  const error = await t.throwsAsync(attester.token({ audience: AUDIENCE, nonces: [NONCE_A] }), { instanceOf: CleanroomError });
  t.is(error.code, 'ATTESTATION_UNAVAILABLE');
  t.true(Date.now() - started < 2000);
});

const garbage: Array<[string, Reply]> = [
  ['a 200 with text that is not a JWT', (_req, res) => void res.writeHead(200).end('hello world')],
  ['a 200 with an empty body', (_req, res) => void res.writeHead(200).end()],
  ['a 200 with a JWT-shaped string whose payload is not JSON', (_req, res) => void res.writeHead(200).end('eyJhbGciOiJSUzI1NiJ9.bm9wZQ.c2ln')],
  [
    'a 200 with a JWT that has no exp',
    async (_req, res) => {
      const token = await new SignJWT({ a: 1 }).setProtectedHeader({ alg: 'RS256' }).sign(google.privateKey);
      res.writeHead(200).end(token);
    },
  ],
  ['a reply larger than 64 KiB', (_req, res) => void res.writeHead(200).end('a'.repeat(70 * 1024))],
  ['a 500', (_req, res) => void res.writeHead(500).end('internal')],
  ['a connection closed without a reply', (req) => void req.socket.destroy()],
  [
    'a reply cut off mid-body',
    (_req, res) => {
      res.writeHead(200, { 'content-length': '1000' });
      res.write('eyJhbGciOi');
      setTimeout(() => res.socket?.destroy(), 20);
    },
  ],
];
for (const [name, reply] of garbage) {
  test(`confidential-space: ${name} → ATTESTATION_UNAVAILABLE`, async (t) => {
    const launcher = await fakeLauncher(t, reply);
    const attester = new ConfidentialSpaceAttester({ socketPath: launcher.socketPath, timeoutMs: 2000 });
    const error = await t.throwsAsync(attester.token({ audience: AUDIENCE, nonces: [NONCE_A] }), { instanceOf: CleanroomError });
    t.is(error.code, 'ATTESTATION_UNAVAILABLE');
  });
}

test('confidential-space: no launcher socket → ATTESTATION_UNAVAILABLE', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'launcher-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const attester = new ConfidentialSpaceAttester({ socketPath: join(dir, 'missing.sock') });
  const error = await t.throwsAsync(attester.token({ audience: AUDIENCE, nonces: [NONCE_A] }), { instanceOf: CleanroomError });
  t.is(error.code, 'ATTESTATION_UNAVAILABLE');
});

const invalid: Array<[string, { audience: string; nonces: string[] }]> = [
  ['an empty audience', { audience: '', nonces: [NONCE_A] }],
  ['a 513-byte audience', { audience: 'a'.repeat(513), nonces: [NONCE_A] }],
  ['257 two-byte characters (514 bytes) as audience', { audience: 'é'.repeat(257), nonces: [NONCE_A] }],
  ['seven nonces', { audience: AUDIENCE, nonces: Array.from({ length: 7 }, (_, i) => `${i}`.repeat(20)) }],
  ['a 9-byte nonce', { audience: AUDIENCE, nonces: ['123456789'] }],
  ['a 75-byte nonce', { audience: AUDIENCE, nonces: ['n'.repeat(75)] }],
  ['a non-string nonce', { audience: AUDIENCE, nonces: [42 as unknown as string] }],
];
for (const [name, request] of invalid) {
  test(`confidential-space: ${name} is VALIDATION_FAILED before the launcher is asked`, async (t) => {
    const c = clock();
    const launcher = await fakeLauncher(t, honest(c));
    const attester = new ConfidentialSpaceAttester({ socketPath: launcher.socketPath, now: c.now });
    const error = await t.throwsAsync(attester.token(request), { instanceOf: CleanroomError });
    t.is(error.code, 'VALIDATION_FAILED');
    t.is(launcher.requests.length, 0);
  });
}

test('confidential-space: the bounds themselves are accepted (10 and 74 bytes, 6 nonces, 512-byte audience, no nonce)', async (t) => {
  const c = clock();
  const launcher = await fakeLauncher(t, honest(c));
  const attester = new ConfidentialSpaceAttester({ socketPath: launcher.socketPath, now: c.now });
  await attester.token({ audience: 'a'.repeat(512), nonces: ['n'.repeat(10), 'm'.repeat(74)] });
  await attester.token({ audience: AUDIENCE, nonces: Array.from({ length: 6 }, (_, i) => `${i}`.repeat(20)) });
  await attester.token({ audience: AUDIENCE, nonces: [] });
  t.is(launcher.requests.length, 3);
});

test('confidential-space: a launcher token bound to the worker identity verifies end to end', async (t) => {
  const c = clock();
  const launcher = await fakeLauncher(t, honest(c));
  const attester = new ConfidentialSpaceAttester({ socketPath: launcher.socketPath, now: c.now });
  const identity = await generateKeyPair('ES256');
  const { kty, crv, x, y } = await exportJWK(identity.publicKey);
  const identityJwk = { kty, crv, x, y };
  const callerNonce = 'Q2FsbGVyTm9uY2UtMTIzNDU2Nzg5MA';
  const bound = await attestationNonce(callerNonce, await calculateJwkThumbprint(identityJwk as JWK));
  const token = await attester.token({ audience: AUDIENCE, nonces: [bound] });
  const result = await verifyAttestation(token, {
    nonce: callerNonce,
    identityJwk,
    policy: { audience: AUDIENCE, allowedImageDigests: [DIGEST] },
    keys: createLocalJWKSet({ keys: [googleJwk] }),
    currentDate: c.now(),
  });
  t.false(result.insecureDev);
  t.deepEqual(result.claims.eat_nonce, [bound]);
});
