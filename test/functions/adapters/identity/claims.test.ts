import test from 'ava';
import { principalFromClaims } from '../../../../functions/adapters/identity/claims.ts';
import { CleanroomError } from '../../../../protocol/errors.ts';

const good = { email: 'A@Example.com', email_verified: true, sub: 's-1', nonce: 'n' };

test('claims: a verified email becomes a lowercased principal', (t) => {
  t.deepEqual(principalFromClaims({ ...good, nonce: undefined }), { email: 'a@example.com', sub: 's-1' });
  t.deepEqual(principalFromClaims(good, 'n'), { email: 'a@example.com', sub: 's-1' });
});

const refused: Array<[string, Record<string, unknown>, string?]> = [
  ['email_verified false', { ...good, email_verified: false }],
  ['email_verified as the string "true"', { ...good, email_verified: 'true' }],
  ['email_verified missing', { email: 'a@example.com', sub: 's' }],
  ['no email', { ...good, email: undefined }],
  ['email not a string', { ...good, email: ['a@example.com'] }],
  ['no subject', { ...good, sub: '' }],
  ['nonce mismatch', good, 'other'],
  ['nonce missing', { ...good, nonce: undefined }, 'n'],
  ['a key-binding token (with a nonce) used as a bearer token', good],
];
for (const [label, claims, nonce] of refused) {
  test(`claims: ${label} → UNAUTHENTICATED`, (t) => {
    const error = t.throws(() => principalFromClaims(claims, nonce), { instanceOf: CleanroomError });
    t.is(error?.code, 'UNAUTHENTICATED');
  });
}
