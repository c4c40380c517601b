import test from 'ava';
import { createSign, generateKeyPairSync, verify } from 'node:crypto';
import { crc32c } from '../../../../runtime/crc32c.ts';
import { derToJoseSignature } from '../../../../functions/adapters/signer/der.ts';

const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s/g, ''), 'hex'));

test('crc32c: known vectors (Castagnoli, RFC 3720 appendix B.4)', (t) => {
  t.is(crc32c(new TextEncoder().encode('123456789')), 0xe3069283);
  t.is(crc32c(new Uint8Array(0)), 0);
  t.is(crc32c(new Uint8Array(32)), 0x8a9136aa);
  t.is(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  t.is(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e);
  t.is(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i)), 0x113fdb5c);
});

test('crc32c: differs from zlib CRC-32', (t) => {
  t.not(crc32c(new TextEncoder().encode('123456789')), 0xcbf43926);
});

const r32 = '11'.repeat(32);
const s32 = '22'.repeat(32);

test('der: two 32-byte integers map straight to r||s', (t) => {
  t.deepEqual(derToJoseSignature(hex(`3044 0220${r32} 0220${s32}`)), hex(r32 + s32));
});

test('der: a leading 0x00 (high bit set) is dropped', (t) => {
  const r = `ff${'01'.repeat(31)}`;
  const s = `80${'02'.repeat(31)}`;
  t.deepEqual(derToJoseSignature(hex(`3046 022100${r} 022100${s}`)), hex(r + s));
});

test('der: short integers are left-padded to 32 bytes', (t) => {
  const r = '7f'.repeat(31);
  t.deepEqual(derToJoseSignature(hex(`3029 021f${r} 0206 010203040506`)), hex(`00${r}${'00'.repeat(26)}010203040506`));
  t.deepEqual(derToJoseSignature(hex('3006 020101 020100')), hex(`${'00'.repeat(31)}01${'00'.repeat(32)}`));
});

test('der: redundant leading zeros are tolerated and stripped', (t) => {
  t.deepEqual(derToJoseSignature(hex(`3045 022100${r32} 0220${s32}`)), hex(r32 + s32));
});

const malformed: Array<[string, string]> = [
  ['not a sequence', `3144 0220${r32} 0220${s32}`],
  ['sequence length mismatch', `3045 0220${r32} 0220${s32}`],
  ['trailing bytes', `3046 0220${r32} 0220${s32} 0000`],
  ['truncated', `3044 0220${r32} 0220${s32.slice(0, 10)}`],
  ['integer tag wrong', `3044 0320${r32} 0220${s32}`],
  ['negative integer', `3044 0220${'80'.repeat(32)} 0220${s32}`],
  ['integer longer than 32 bytes', `3047 0223${'01'.repeat(35)} 0220${s32}`],
  ['zero-length integer', `3024 0200 0220${s32}`],
  ['empty', ''],
];
for (const [name, input] of malformed) {
  test(`der: ${name} is refused`, (t) => {
    t.throws(() => derToJoseSignature(hex(input)), { instanceOf: TypeError });
  });
}

test('der: node:crypto DER signatures convert to r||s that verify (many, so short r and s occur)', (t) => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  let short = 0;
  let padded = 0;
  for (let i = 0; i < 1500; i++) {
    const data = Buffer.from(`message ${i}`);
    const der = createSign('sha256').update(data).sign(privateKey);
    if (der[3] === 0x21) padded++;
    if (der[3]! < 0x20) short++;
    const jose = derToJoseSignature(der);
    t.is(jose.length, 64);
    if (!verify('sha256', data, { key: publicKey, dsaEncoding: 'ieee-p1363' }, jose)) t.fail(`signature ${i} does not verify`);
  }
  t.true(padded > 0, 'some r had its high bit set');
  t.log(`r with sign padding: ${padded}, r shorter than 32 bytes: ${short}`);
});
