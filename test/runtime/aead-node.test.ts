import test from 'ava';
import { randomBytes } from 'node:crypto';
import { type ChunkAead, type DatasetHeaderInit, decryptDataset, encryptDataset, generateDataKey, webCryptoAead } from '../../protocol/dataset-format.ts';
import { nodeAead } from '../../runtime/aead-node.ts';

const IMPLEMENTATIONS: Array<[string, ChunkAead]> = [
  ['nodeAead', nodeAead],
  ['webCryptoAead', webCryptoAead],
];
const LENGTHS = [0, 1, 15, 16, 17, 1000, 64 * 1024 + 3];

test('nodeAead: seals byte for byte like webCryptoAead, and each opens the other', async (t) => {
  for (const length of LENGTHS) {
    const key = generateDataKey();
    const nonce = randomBytes(12);
    const aad = randomBytes(32);
    const plaintext = randomBytes(length);
    const fromNode = await nodeAead.seal(key, nonce, aad, plaintext);
    const fromWeb = await webCryptoAead.seal(key, nonce, aad, plaintext);
    t.is(fromNode.byteLength, length + 16);
    t.deepEqual(fromNode, fromWeb, `length ${length}`);
    t.deepEqual(await nodeAead.open(key, nonce, aad, fromWeb), new Uint8Array(plaintext), `length ${length}`);
    t.deepEqual(await webCryptoAead.open(key, nonce, aad, fromNode), new Uint8Array(plaintext), `length ${length}`);
  }
});

test('nodeAead: opens a ciphertext given as a view at an odd offset into a larger buffer', async (t) => {
  const key = generateDataKey();
  const nonce = randomBytes(12);
  const aad = randomBytes(32);
  const plaintext = randomBytes(5000);
  const sealed = await webCryptoAead.seal(key, nonce, aad, plaintext);
  const backing = new Uint8Array(sealed.byteLength + 7);
  backing.set(sealed, 3);
  t.deepEqual(await nodeAead.open(key, nonce, aad, backing.subarray(3, 3 + sealed.byteLength)), new Uint8Array(plaintext));
});

const forgeries: Array<[string, (c: { key: Uint8Array; nonce: Uint8Array; aad: Uint8Array; sealed: Uint8Array }) => [Uint8Array, Uint8Array, Uint8Array, Uint8Array]]> = [
  [
    'a flipped ciphertext bit',
    ({ key, nonce, aad, sealed }) => {
      const c = sealed.slice();
      c[3]! ^= 0x10;
      return [key, nonce, aad, c];
    },
  ],
  [
    'a flipped tag bit',
    ({ key, nonce, aad, sealed }) => {
      const c = sealed.slice();
      c[c.length - 1]! ^= 0x01;
      return [key, nonce, aad, c];
    },
  ],
  ['a truncated tag (15 bytes)', ({ key, nonce, aad, sealed }) => [key, nonce, aad, sealed.subarray(0, sealed.length - 1)]],
  ['a ciphertext shorter than a tag', ({ key, nonce, aad }) => [key, nonce, aad, new Uint8Array(15)]],
  ['another AAD', ({ key, nonce, aad, sealed }) => [key, nonce, aad.map((b, i) => (i === 0 ? b ^ 1 : b)), sealed]],
  ['another nonce', ({ key, nonce, aad, sealed }) => [key, nonce.map((b, i) => (i === 11 ? b ^ 1 : b)), aad, sealed]],
  ['another key', ({ nonce, aad, sealed }) => [generateDataKey(), nonce, aad, sealed]],
];
for (const [implName, aead] of IMPLEMENTATIONS) {
  for (const [name, forge] of forgeries) {
    test(`${implName}: open returns null for ${name}`, async (t) => {
      const key = generateDataKey();
      const nonce = randomBytes(12);
      const aad = randomBytes(32);
      const sealed = await aead.seal(key, nonce, aad, randomBytes(100));
      t.not(await aead.open(key, nonce, aad, sealed), null, 'the untouched record opens');
      t.is(await aead.open(...forge({ key, nonce, aad, sealed })), null);
    });
  }
}

test('nodeAead: a key of the wrong size is misuse and throws', async (t) => {
  await t.throwsAsync(nodeAead.seal(new Uint8Array(16), new Uint8Array(12), new Uint8Array(0), new Uint8Array(1)));
});

test('nodeAead and webCryptoAead: a whole dataset encrypts to identical bytes and each decrypts the other', async (t) => {
  const plaintext = randomBytes(3 * 64 * 1024 + 11);
  const key = generateDataKey();
  const noncePrefix = randomBytes(7);
  const header: DatasetHeaderInit = {
    session_id: 'session-a',
    dataset_id: crypto.randomUUID(),
    owner_email: 'owner@example.com',
    table: 'orders',
    format: 'parquet',
    schema: [{ name: 'id', type: 'BIGINT' }],
    row_count: 7,
    plaintext_bytes: plaintext.byteLength,
  };
  const encrypt = async (aead: ChunkAead) =>
    new Uint8Array(await new Response(encryptDataset({ header, key, plaintext: new Blob([plaintext]).stream(), chunkBytes: 64 * 1024, noncePrefix, aead })).arrayBuffer());
  const fromNode = await encrypt(nodeAead);
  const fromWeb = await encrypt(webCryptoAead);
  t.deepEqual(fromNode, fromWeb);
  const expect = { session_id: header.session_id, dataset_id: header.dataset_id };
  for (const [file, aead] of [
    [fromNode, webCryptoAead],
    [fromWeb, nodeAead],
  ] as const) {
    const { plaintext: out } = decryptDataset({ key, ciphertext: new Blob([file]).stream(), expect, aead });
    t.deepEqual(new Uint8Array(await new Response(out).arrayBuffer()), new Uint8Array(plaintext));
  }
});
