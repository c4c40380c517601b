import { rmSync } from 'node:fs';
import test, { type ExecutionContext } from 'ava';
import { calculateJwkThumbprint } from 'jose';
import { attestWorker, randomNonce } from '../../client/sdk/attestation.ts';
import { TransportError } from '../../client/sdk/errors.ts';
import { CleanroomError, type ErrorCode } from '../../protocol/errors.ts';
import { deadUrl, fakeServer, runCli, tempHome, tempRoot, type CliResult } from './local-stack.ts';
import { testWorker, WORKER_DIGEST, type TestWorker } from './test-worker.ts';

const OTHER_DIGEST = `sha256:${'cd'.repeat(32)}`;

let homes: string;
test.before(() => {
  homes = tempRoot();
});
test.after.always(() => {
  if (homes) rmSync(homes, { recursive: true, force: true });
});

/** A worker for one test, closed when the test ends. */
async function worker(t: ExecutionContext, ...args: Parameters<typeof testWorker>): Promise<TestWorker> {
  const w = await testWorker(...args);
  t.teardown(() => w.close());
  return w;
}

/** `cleanroom attest ...` with only the given environment. */
function attest(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return runCli(['attest', ...args], { CLEANROOM_HOME: tempHome(homes), ...env });
}

function json(res: CliResult): any {
  return JSON.parse(res.stdout);
}

/** A refusal: verdict on stdout, one `error: CODE:` line on stderr, exit 1, no stack. */
function assertRefused(t: ExecutionContext, res: CliResult, code: string) {
  t.is(res.code, 1, res.stderr);
  t.regex(res.stderr, new RegExp(`^error: ${code}: `, 'm'));
  t.notRegex(res.stderr, /^\s+at /m);
  t.notRegex(res.stderr, /NOTHING IS ATTESTED/);
}

// --- SDK ---------------------------------------------------------------------------------------

test('sdk attestWorker: a dev token is accepted only with the opt-in and binds the presented identity key', async (t) => {
  const w = await worker(t);
  const attested = await attestWorker({ workerUrl: `${w.url}/`, allowedImageDigests: [WORKER_DIGEST], allowInsecureDev: true });
  t.true(attested.insecureDev);
  t.true(attested.digestPinned);
  t.is(attested.identityThumbprint, w.identity.thumbprint);
  t.deepEqual(Object.keys(attested.identityJwk).sort(), ['crv', 'kty', 'x', 'y']);
  t.is(await calculateJwkThumbprint(attested.identityJwk as any), w.identity.thumbprint);
  t.is(attested.claims.submods?.container?.image_digest, WORKER_DIGEST);
  t.is(attested.instanceId, 'test-worker');
  t.is(attested.workerUrl, w.url);
  t.is(Date.parse(attested.expiresAt), attested.claims.exp * 1000);

  const refused = await t.throwsAsync(attestWorker({ workerUrl: w.url, allowedImageDigests: [WORKER_DIGEST] }));
  t.true(refused instanceof CleanroomError);
  t.is((refused as CleanroomError).code, 'ATTESTATION_INSECURE_DEV');
});

test('sdk attestWorker: each call sends a fresh 32-byte nonce, which the token binds', async (t) => {
  const w = await worker(t);
  const seen: string[] = [];
  const spy = (input: string, init: RequestInit) => {
    const nonce = new URL(input).searchParams.get('nonce');
    if (nonce !== null) seen.push(nonce);
    return fetch(input, init);
  };
  for (let i = 0; i < 2; i++) {
    await attestWorker({ workerUrl: w.url, allowedImageDigests: [WORKER_DIGEST], allowInsecureDev: true, fetch: spy });
  }
  t.is(seen.length, 2);
  t.not(seen[0], seen[1]);
  for (const nonce of seen) t.regex(nonce, /^[A-Za-z0-9_-]{43}$/);
  t.not(randomNonce(), randomNonce());
});

test('sdk attestWorker: the dev-claimed digest is taken only when asked, with the opt-in and no allow-list', async (t) => {
  const w = await worker(t);
  const claimed = await attestWorker({ workerUrl: w.url, allowedImageDigests: [], allowInsecureDev: true, acceptDevClaimedDigest: true });
  t.false(claimed.digestPinned);
  const cases: Array<[string, Parameters<typeof attestWorker>[0], ErrorCode]> = [
    ['no opt-in to take it', { workerUrl: w.url, allowedImageDigests: [], allowInsecureDev: true }, 'ATTESTATION_IMAGE_DIGEST'],
    ['an allow-list given', { workerUrl: w.url, allowedImageDigests: [OTHER_DIGEST], allowInsecureDev: true, acceptDevClaimedDigest: true }, 'ATTESTATION_IMAGE_DIGEST'],
    ['dev not allowed', { workerUrl: w.url, allowedImageDigests: [], acceptDevClaimedDigest: true }, 'ATTESTATION_INSECURE_DEV'],
  ];
  for (const [name, options, code] of cases) {
    const error = await t.throwsAsync(attestWorker(options), undefined, name);
    t.is((error as CleanroomError).code, code, name);
  }
});

test('sdk attestWorker: a worker that does not answer is WORKER_UNREACHABLE; a foreign body is UNEXPECTED_RESPONSE', async (t) => {
  const dead = await deadUrl();
  const error = await t.throwsAsync(attestWorker({ workerUrl: dead, allowedImageDigests: [WORKER_DIGEST] }));
  t.true(error instanceof TransportError);
  t.is((error as TransportError).code, 'WORKER_UNREACHABLE');
  t.true(error!.message.includes(`cannot reach the worker at ${dead}`));

  const html = await fakeServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<html>'));
  t.teardown(() => html.close());
  const foreign = await t.throwsAsync(attestWorker({ workerUrl: html.url, allowedImageDigests: [WORKER_DIGEST] }));
  t.is((foreign as TransportError).code, 'UNEXPECTED_RESPONSE');
});

// --- CLI ---------------------------------------------------------------------------------------

test('cli attest --allow-insecure-dev without a digest: VERIFIED with the claims, exit 0, and a loud warning', async (t) => {
  const w = await worker(t);
  const res = await attest(['--worker', w.url, '--allow-insecure-dev']);
  t.is(res.code, 0, res.stderr);
  t.regex(res.stdout, /^verdict\s+VERIFIED \(INSECURE DEV: nothing is attested\)$/m);
  t.regex(res.stdout, /^hwmodel\s+INSECURE_DEV$/m);
  t.regex(res.stdout, /^swname\s+CONFIDENTIAL_SPACE$/m);
  t.regex(res.stdout, /^dbgstat\s+enabled$/m);
  t.regex(res.stdout, /^secboot\s+false$/m);
  t.regex(res.stdout, new RegExp(`^image digest\\s+${WORKER_DIGEST} \\(as claimed: not checked`, 'm'));
  t.regex(res.stdout, new RegExp(`^issuer\\s+${w.url}/dev-attestation$`, 'm'));
  t.regex(res.stdout, /^expires\s+\d{4}-\d\d-\d\dT/m);
  t.regex(res.stdout, new RegExp(`^identity key\\s+${w.identity.thumbprint}$`, 'm'));
  // The warning is on stderr, several lines, and says what is missing.
  t.regex(res.stderr, /NOTHING IS ATTESTED/);
  t.regex(res.stderr, /not from a TEE/);
  t.regex(res.stderr, /image digest was not checked/);
  t.true(res.stderr.trim().split('\n').length >= 5);
});

test('cli attest --json: {verdict, claims, insecure_dev}; a pinned digest is not called unchecked', async (t) => {
  const w = await worker(t);
  const res = await attest(['--worker', w.url, '--allow-insecure-dev', '--expect-digest', OTHER_DIGEST, '--expect-digest', WORKER_DIGEST, '--json']);
  t.is(res.code, 0, res.stderr);
  const out = json(res);
  t.like(out, { verdict: 'VERIFIED', insecure_dev: true, digest_pinned: true, worker: w.url, instance_id: 'test-worker' });
  t.like(out.claims, {
    hwmodel: 'INSECURE_DEV',
    swname: 'CONFIDENTIAL_SPACE',
    dbgstat: 'enabled',
    secboot: false,
    image_digest: WORKER_DIGEST,
    issuer: `${w.url}/dev-attestation`,
    identity_thumbprint: w.identity.thumbprint,
  });
  t.true(Date.parse(out.claims.expires_at) > Date.now());
  t.regex(res.stderr, /NOTHING IS ATTESTED/);
  t.notRegex(res.stderr, /image digest was not checked/);
});

test('cli attest reads TEE_SERVICE_ENDPOINT, CLEANROOM_WORKER_DIGESTS and CLEANROOM_ALLOW_INSECURE_DEV_ATTESTATION', async (t) => {
  const w = await worker(t);
  const env = { TEE_SERVICE_ENDPOINT: w.url, CLEANROOM_WORKER_DIGESTS: `${OTHER_DIGEST}, ${WORKER_DIGEST}`, CLEANROOM_ALLOW_INSECURE_DEV_ATTESTATION: '1' };
  const res = await attest(['--json'], env);
  t.is(res.code, 0, res.stderr);
  t.like(json(res), { verdict: 'VERIFIED', digest_pinned: true });
  // The flag wins over the environment.
  assertRefused(t, await attest(['--no-allow-insecure-dev'], env), 'ATTESTATION_INSECURE_DEV');
  assertRefused(t, await attest(['--expect-digest', OTHER_DIGEST], env), 'ATTESTATION_IMAGE_DIGEST');
});

test('cli attest without --allow-insecure-dev: REFUSED (ATTESTATION_INSECURE_DEV), exit 1', async (t) => {
  const w = await worker(t);
  const res = await attest(['--worker', w.url, '--expect-digest', WORKER_DIGEST]);
  assertRefused(t, res, 'ATTESTATION_INSECURE_DEV');
  t.regex(res.stdout, /^verdict\s+REFUSED \(ATTESTATION_INSECURE_DEV\)$/m);
  const asJson = await attest(['--worker', w.url, '--json']);
  assertRefused(t, asJson, 'ATTESTATION_INSECURE_DEV');
  t.like(json(asJson), { verdict: 'REFUSED', code: 'ATTESTATION_INSECURE_DEV', insecure_dev: false });
  t.is(json(asJson).claims, undefined);
});

test('cli attest with a wrong --expect-digest: REFUSED (ATTESTATION_IMAGE_DIGEST)', async (t) => {
  const w = await worker(t);
  const res = await attest(['--worker', w.url, '--allow-insecure-dev', '--expect-digest', OTHER_DIGEST, '--json']);
  assertRefused(t, res, 'ATTESTATION_IMAGE_DIGEST');
  t.like(json(res), { verdict: 'REFUSED', code: 'ATTESTATION_IMAGE_DIGEST' });
});

test('cli attest: a worker that presents another identity key than the token binds is REFUSED (ATTESTATION_NONCE)', async (t) => {
  const w = await worker(t, 'swap-key');
  const res = await attest(['--worker', w.url, '--allow-insecure-dev', '--json']);
  assertRefused(t, res, 'ATTESTATION_NONCE');
  t.like(json(res), { verdict: 'REFUSED', code: 'ATTESTATION_NONCE' });
});

test('cli attest: an old token replayed for a new nonce is REFUSED (ATTESTATION_NONCE)', async (t) => {
  const w = await worker(t);
  t.is((await attest(['--worker', w.url, '--allow-insecure-dev'])).code, 0);
  w.mode = 'replay';
  const res = await attest(['--worker', w.url, '--allow-insecure-dev']);
  assertRefused(t, res, 'ATTESTATION_NONCE');
  t.is(w.issued, 2);
});

test('cli attest: a token for another audience is REFUSED (ATTESTATION_AUDIENCE); --audience selects it', async (t) => {
  const w = await worker(t, 'honest', 'other-clients');
  assertRefused(t, await attest(['--worker', w.url, '--allow-insecure-dev']), 'ATTESTATION_AUDIENCE');
  t.is((await attest(['--worker', w.url, '--allow-insecure-dev', '--audience', 'other-clients'])).code, 0);
});

test('cli attest: a dev attester naming itself under another origin is REFUSED (ATTESTATION_ISSUER) with the fix', async (t) => {
  const w = await worker(t);
  // The worker's issuer says 127.0.0.1; the same worker reached as localhost is another origin.
  const res = await attest(['--worker', `http://localhost:${w.port}`, '--allow-insecure-dev']);
  assertRefused(t, res, 'ATTESTATION_ISSUER');
  t.true(res.stderr.includes(`${w.url}/dev-attestation`));
});

test('cli attest: the token the worker sent is never printed', async (t) => {
  const w = await worker(t);
  const res = await attest(['--worker', w.url, '--allow-insecure-dev', '--json']);
  t.is(res.code, 0, res.stderr);
  t.notRegex(res.stdout + res.stderr, /eyJ[A-Za-z0-9_-]{20,}\./);
});

test('cli attest: an unreachable worker is WORKER_UNREACHABLE naming the URL, exit 4, no verdict', async (t) => {
  const url = await deadUrl();
  const res = await attest(['--worker', url, '--allow-insecure-dev', '--json']);
  t.is(res.code, 4);
  t.regex(res.stderr, /^error: WORKER_UNREACHABLE: /m);
  t.true(res.stderr.includes(`cannot reach the worker at ${url}`));
  t.notRegex(res.stderr, /^\s+at /m);
  t.is(res.stdout, '');
});

const usageErrors: Array<[string, string[], Record<string, string>]> = [
  ['a digest that is not sha256', ['--expect-digest', 'sha256:abc'], {}],
  ['an uppercase digest', ['--expect-digest', `sha256:${'AB'.repeat(32)}`], {}],
  ['a worker that is not a URL', ['--worker', 'not a url'], {}],
  ['a worker URL with a query', ['--worker', 'http://localhost:8080/?x=1'], {}],
  ['an empty audience', ['--audience', ''], {}],
  ['an argument', ['extra'], {}],
];
for (const [name, args, env] of usageErrors) {
  test(`cli attest: usage error (${name}) exits 2`, async (t) => {
    const res = await attest(args, env);
    t.is(res.code, 2, res.stderr);
    t.regex(res.stderr, /^error: USAGE: /m);
    t.regex(res.stderr, /^usage: cleanroom attest /m);
  });
}

const configErrors: Array<[string, Record<string, string>]> = [
  ['TEE_SERVICE_ENDPOINT not a URL', { TEE_SERVICE_ENDPOINT: 'nope' }],
  ['CLEANROOM_WORKER_DIGESTS malformed', { CLEANROOM_WORKER_DIGESTS: 'sha256:1,sha256:2' }],
  ['CLEANROOM_ALLOW_INSECURE_DEV_ATTESTATION not 0/1', { CLEANROOM_ALLOW_INSECURE_DEV_ATTESTATION: 'yes' }],
];
for (const [name, env] of configErrors) {
  test(`cli attest: configuration error (${name}) exits 2`, async (t) => {
    const res = await attest([], env);
    t.is(res.code, 2, res.stderr);
    t.regex(res.stderr, /^error: CONFIG_INVALID: /m);
  });
}

test('cli attest --help names the insecure option with a warning', async (t) => {
  const res = await attest(['--help']);
  t.is(res.code, 0);
  t.regex(res.stdout, /^usage: cleanroom attest /);
  t.regex(res.stdout, /--allow-insecure-dev\s+WARNING/);
});
