import test from 'ava';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEV_AUDIENCE, DEV_ISSUER, DevIdentityProvider } from '../../../../functions/adapters/identity/dev-idp.ts';
import { JwksIdentityVerifier } from '../../../../functions/adapters/identity/jwks-verifier.ts';
import { CleanroomError } from '../../../../protocol/errors.ts';

function tempDir(t: { teardown(fn: () => void): void }) {
  const dir = mkdtempSync(join(tmpdir(), 'devidp-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Serves a JWKS over real HTTP, counting fetches, so the verifier runs its production path. */
async function jwksServer(t: { teardown(fn: () => void): void }, jwks: () => unknown) {
  let fetches = 0;
  const server = createServer((_req, res) => {
    fetches++;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(jwks()));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  return { url: new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`), fetches: () => fetches };
}

test('dev idp: key persists across restarts with mode 0600; old tokens still verify', async (t) => {
  const dir = tempDir(t);
  const first = await DevIdentityProvider.load(dir);
  const { token } = await first.issue('Alice@Example.com');
  t.is(statSync(join(dir, 'dev-idp-key.json')).mode & 0o777, 0o600);
  const second = await DevIdentityProvider.load(dir);
  t.deepEqual(second.jwks(), first.jwks());
  t.false(JSON.stringify(second.jwks()).includes('"d"'));
  const server = await jwksServer(t, () => second.jwks());
  const verifier = new JwksIdentityVerifier({ issuer: DEV_ISSUER, audience: DEV_AUDIENCE, jwksUrl: server.url });
  const principal = await verifier.verify(token);
  t.is(principal.email, 'alice@example.com');
  t.regex(principal.sub, /^dev\|/);
  await verifier.verify(token);
  t.is(server.fetches(), 1, 'the JWKS is cached');
});

test('jwks verifier: another issuer key, wrong audience, expiry and nonce are refused', async (t) => {
  const idp = await DevIdentityProvider.load(tempDir(t));
  const other = await DevIdentityProvider.load(tempDir(t));
  const server = await jwksServer(t, () => idp.jwks());
  const verifier = new JwksIdentityVerifier({ issuer: DEV_ISSUER, audience: DEV_AUDIENCE, jwksUrl: server.url });
  const wrongAud = new JwksIdentityVerifier({ issuer: DEV_ISSUER, audience: 'other-aud', jwksUrl: server.url });
  const cases: Array<[string, () => Promise<unknown>]> = [
    ['signed by another dev idp', async () => verifier.verify((await other.issue('a@example.com')).token)],
    ['wrong audience', async () => wrongAud.verify((await idp.issue('a@example.com')).token)],
    ['expired', async () => verifier.verify((await idp.issue('a@example.com', { ttlSeconds: -30 })).token)],
    ['nonce mismatch', async () => verifier.verify((await idp.issue('a@example.com', { nonce: 'x' })).token, { nonce: 'y' })],
  ];
  for (const [label, run] of cases) {
    const error = await t.throwsAsync(run(), { instanceOf: CleanroomError }, label);
    t.is(error?.code, 'UNAUTHENTICATED', label);
  }
});

test('jwks verifier: an unreachable JWKS is a refusal, not a hang or a crash', async (t) => {
  const idp = await DevIdentityProvider.load(tempDir(t));
  const verifier = new JwksIdentityVerifier({ issuer: DEV_ISSUER, audience: DEV_AUDIENCE, jwksUrl: new URL('http://127.0.0.1:9/jwks.json') });
  const error = await t.throwsAsync(verifier.verify((await idp.issue('a@example.com')).token), { instanceOf: CleanroomError });
  t.is(error?.code, 'UNAUTHENTICATED');
});
