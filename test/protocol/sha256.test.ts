import test from 'ava';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { createSha256, sha256, toHex } from '../../protocol/sha256.ts';

const reference = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/** `bytes` fed in pieces cut at `cuts` (sorted offsets). */
function hashInPieces(bytes: Uint8Array, cuts: number[]): string {
  const hash = createSha256();
  let from = 0;
  for (const cut of [...cuts, bytes.byteLength]) {
    hash.update(bytes.subarray(from, cut));
    from = cut;
  }
  return toHex(hash.digest());
}

const vectors: Array<[string, string, string]> = [
  ['empty', '', 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'],
  ['abc', 'abc', 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'],
  ['448-bit message', 'abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq', '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1'],
  [
    '896-bit message',
    'abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu',
    'cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1',
  ],
];
for (const [name, input, hex] of vectors) {
  test(`sha256: FIPS 180-2 vector "${name}" hashes to the published digest`, (t) => {
    t.is(toHex(sha256(new TextEncoder().encode(input))), hex);
  });
}

test('sha256: one million "a" in uneven pieces hashes to the published digest', (t) => {
  const hash = createSha256();
  const piece = new TextEncoder().encode('a'.repeat(999));
  let left = 1_000_000;
  while (left > 0) {
    const n = Math.min(left, piece.length);
    hash.update(piece.subarray(0, n));
    left -= n;
  }
  t.is(toHex(hash.digest()), 'cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0');
});

test('sha256: every length from 0 to 300 bytes matches node:crypto, whole and in random pieces', (t) => {
  for (let n = 0; n <= 300; n++) {
    const bytes = randomBytes(n);
    t.is(toHex(sha256(bytes)), reference(bytes), `length ${n}`);
    const cuts = Array.from({ length: randomInt(0, 6) }, () => randomInt(0, n + 1)).sort((a, b) => a - b);
    t.is(hashInPieces(bytes, cuts), reference(bytes), `length ${n}, cuts ${cuts.join(',')}`);
  }
});

test('sha256: lengths around block and padding boundaries match node:crypto with every split point', (t) => {
  for (const n of [55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129]) {
    const bytes = randomBytes(n);
    for (let cut = 0; cut <= n; cut++) t.is(hashInPieces(bytes, [cut]), reference(bytes), `length ${n}, cut ${cut}`);
  }
});

test('sha256: large inputs in random pieces match node:crypto', (t) => {
  for (const n of [4095, 4096, 65_537, 1_048_576 + 13]) {
    const bytes = randomBytes(n);
    const cuts = Array.from({ length: 20 }, () => randomInt(0, n + 1)).sort((a, b) => a - b);
    t.is(hashInPieces(bytes, cuts), reference(bytes), `length ${n}`);
  }
});

test('sha256: one byte at a time matches node:crypto', (t) => {
  const bytes = randomBytes(1000);
  t.is(
    hashInPieces(
      bytes,
      Array.from({ length: 999 }, (_, i) => i + 1),
    ),
    reference(bytes),
  );
});

test('sha256: views at odd offsets into a larger buffer hash only their own bytes', (t) => {
  const backing = randomBytes(5000);
  for (const [from, to] of [
    [1, 4001],
    [3, 3],
    [7, 71],
    [13, 4999],
  ] as const) {
    const view = new Uint8Array(backing.buffer, backing.byteOffset + from, to - from);
    t.is(toHex(sha256(view)), reference(backing.subarray(from, to)), `bytes ${from}..${to}`);
  }
});

test('sha256: update after digest and a second digest are misuse (TypeError)', (t) => {
  const hash = createSha256();
  hash.update(new Uint8Array([1]));
  hash.digest();
  t.throws(() => hash.update(new Uint8Array([2])), { instanceOf: TypeError });
  t.throws(() => hash.digest(), { instanceOf: TypeError });
});

test('sha256: toHex writes lowercase, zero-padded hex', (t) => {
  t.is(toHex(new Uint8Array([0, 1, 15, 16, 171, 255])), '00010f10abff');
  t.is(toHex(new Uint8Array(0)), '');
});
