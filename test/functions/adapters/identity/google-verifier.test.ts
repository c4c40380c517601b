import test from 'ava';
import { generateKeyPairSync } from 'node:crypto';
import { OAuth2Client } from 'google-auth-library';
import { SignJWT, importPKCS8 } from 'jose';
import { GoogleIdTokenVerifier } from '../../../../functions/adapters/identity/google-verifier.ts';
import { CleanroomError } from '../../../../protocol/errors.ts';

/**
 * google-auth-library does the real verification; only the source of Google's certs is replaced
 * by a key pair generated here, so every claim check runs as in production.
 */
const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const KID = 'test-kid';

class TestCertsClient extends OAuth2Client {
  override async getFederatedSignonCertsAsync() {
    return { certs: { [KID]: publicKey.export({ type: 'spki', format: 'pem' }).toString() } } as unknown as Awaited<ReturnType<OAuth2Client['getFederatedSignonCertsAsync']>>;
  }
}

const AUD = 'console-client.apps.googleusercontent.com';
const verifier = new GoogleIdTokenVerifier({ audiences: [AUD, 'cli-client.apps.googleusercontent.com'], client: new TestCertsClient() });

async function token(claims: Record<string, unknown>, options: { aud?: string; iss?: string; exp?: number; kid?: string } = {}) {
  const key = await importPKCS8(privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), 'RS256');
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ email_verified: true, ...claims })
    .setProtectedHeader({ alg: 'RS256', kid: options.kid ?? KID, typ: 'JWT' })
    .setIssuer(options.iss ?? 'https://accounts.google.com')
    .setAudience(options.aud ?? AUD)
    .setSubject('1234567890')
    .setIssuedAt(now)
    .setExpirationTime(options.exp ?? now + 600)
    .sign(key);
}

test('google verifier: a valid token yields the lowercased email and subject', async (t) => {
  t.deepEqual(await verifier.verify(await token({ email: 'Alice@Example.com' })), { email: 'alice@example.com', sub: '1234567890' });
  const cli = await token({ email: 'a@example.com' }, { aud: 'cli-client.apps.googleusercontent.com' });
  t.is((await verifier.verify(cli)).email, 'a@example.com');
});

test('google verifier: nonce is checked when asked for', async (t) => {
  const withNonce = await token({ email: 'a@example.com', nonce: 'n-1' });
  t.is((await verifier.verify(withNonce, { nonce: 'n-1' })).email, 'a@example.com');
  const error = await t.throwsAsync(verifier.verify(withNonce, { nonce: 'n-2' }), { instanceOf: CleanroomError });
  t.is(error?.code, 'UNAUTHENTICATED');
});

const refused: Array<[string, () => Promise<string>]> = [
  ['wrong audience', () => token({ email: 'a@example.com' }, { aud: 'someone-else' })],
  ['wrong issuer', () => token({ email: 'a@example.com' }, { iss: 'https://evil.example.com' })],
  ['expired', () => token({ email: 'a@example.com' }, { exp: Math.floor(Date.now() / 1000) - 3600 })],
  ['unknown key id', () => token({ email: 'a@example.com' }, { kid: 'other' })],
  ['unverified email', () => token({ email: 'a@example.com', email_verified: false })],
  ['no email', () => token({})],
  [
    'tampered payload',
    async () => {
      const [h, , s] = (await token({ email: 'a@example.com' })).split('.');
      const p = Buffer.from(JSON.stringify({ email: 'root@example.com', email_verified: true, aud: AUD, iss: 'https://accounts.google.com', sub: '1', iat: 1, exp: 9999999999 })).toString('base64url');
      return `${h}.${p}.${s}`;
    },
  ],
  ['garbage', async () => 'abc'],
];
for (const [label, make] of refused) {
  test(`google verifier: ${label} → UNAUTHENTICATED`, async (t) => {
    const error = await t.throwsAsync(verifier.verify(await make()), { instanceOf: CleanroomError });
    t.is(error?.code, 'UNAUTHENTICATED');
  });
}

test('google verifier: refuses to be built without an audience', (t) => {
  t.throws(() => new GoogleIdTokenVerifier({ audiences: [] }), { instanceOf: TypeError });
});
