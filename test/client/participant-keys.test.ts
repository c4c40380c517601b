import test from 'ava';
import { CompactEncrypt, compactDecrypt, importJWK } from 'jose';
import { generateParticipantKeys, importEncryptionKey, participantKeyBinding } from '../../client/sdk/participant-keys.ts';
import { resultToCsv } from '../../client/sdk/result.ts';
import { CleanroomError } from '../../protocol/errors.ts';
import { jwkThumbprint, keyBindingNonce } from '../../protocol/key-binding.ts';
import { RegisterKeysRequestSchema } from '../../protocol/session.ts';
import * as v from 'valibot';

test('participant keys: two distinct P-256 private keys; the binding holds their public halves, thumbprints and nonce', async (t) => {
  const keys = await generateParticipantKeys();
  for (const jwk of [keys.signing, keys.encryption]) {
    t.like(jwk, { kty: 'EC', crv: 'P-256' });
    t.is(typeof jwk.d, 'string');
  }
  t.not(keys.signing.x, keys.encryption.x);
  const binding = await participantKeyBinding(keys);
  t.deepEqual(Object.keys(binding.signing_jwk).sort(), ['crv', 'kty', 'x', 'y'], 'no private member leaves');
  t.is(binding.signing_kid, await jwkThumbprint(binding.signing_jwk));
  t.is(binding.encryption_kid, await jwkThumbprint(binding.encryption_jwk));
  t.is(binding.nonce, await keyBindingNonce(binding.signing_kid, binding.encryption_kid));
  // The request the API validates accepts exactly these public keys.
  t.true(v.is(RegisterKeysRequestSchema, { signing_jwk: binding.signing_jwk, encryption_jwk: binding.encryption_jwk, binding_token: 'x' }));
});

test('participant keys: the stored encryption key opens what was encrypted to its public half', async (t) => {
  const keys = await generateParticipantKeys();
  const { encryption_jwk } = await participantKeyBinding(keys);
  const jwe = await new CompactEncrypt(new TextEncoder().encode('hello')).setProtectedHeader({ alg: 'ECDH-ES+A256KW', enc: 'A256GCM' }).encrypt(await importJWK(encryption_jwk, 'ECDH-ES+A256KW'));
  const { plaintext } = await compactDecrypt(jwe, await importEncryptionKey(keys));
  t.is(new TextDecoder().decode(plaintext), 'hello');
});

test('participant keys: a damaged key is VALIDATION_FAILED', async (t) => {
  const keys = await generateParticipantKeys();
  for (const damaged of [
    { ...keys, signing: { ...keys.signing, d: undefined } },
    { ...keys, encryption: { ...keys.encryption, crv: 'P-384' } },
    { ...keys, encryption: { ...keys.encryption, x: keys.signing.x } },
  ]) {
    const error = await t.throwsAsync(participantKeyBinding(damaged));
    t.is((error as CleanroomError).code, 'VALIDATION_FAILED');
  }
});

test('resultToCsv: header, NULL as an empty field, "" for the empty string, quoting, CRLF lines, nested values as JSON', (t) => {
  const csv = resultToCsv({
    columns: [
      { name: 'region', type: 'VARCHAR' },
      { name: 'n', type: 'BIGINT' },
      { name: 'total', type: 'DOUBLE' },
      { name: 'x', type: 'VARCHAR' },
    ],
    rows: [
      ['north', 3, 12.5, null],
      ['a, "b"', 0, -1, ''],
      ['two\nlines', 1, 0.1, [1, 2]],
    ],
  });
  t.is(csv, 'region,n,total,x\r\nnorth,3,12.5,\r\n"a, ""b""",0,-1,""\r\n"two\nlines",1,0.1,"[1,2]"\r\n');
  t.is(resultToCsv({ columns: [{ name: 'a', type: 'INTEGER' }], rows: [] }), 'a\r\n');
});
