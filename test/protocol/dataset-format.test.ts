import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import {
  type ChunkAead,
  type DatasetHeaderInit,
  MAGIC,
  datasetCiphertextBytes,
  decryptDataset,
  encryptDataset,
  generateDataKey,
  readDatasetHeader,
  recordCount,
  webCryptoAead,
} from '../../protocol/dataset-format.ts';
import { CleanroomError, type ErrorCode } from '../../protocol/errors.ts';
import { nodeAead } from '../../runtime/aead-node.ts';

const CHUNK = 64 * 1024;
const SEMICOLON = { delimiter: ';', quote: '"', escape: '"', header: true } as const;
/** The same dialect with its keys in canonical order, for headers written by hand. */
const SORTED_SEMICOLON = { delimiter: ';', escape: '"', header: true, quote: '"' };
const SESSION = 'session-a';
const AEADS: Array<[string, ChunkAead]> = [
  ['webCryptoAead', webCryptoAead],
  ['nodeAead', nodeAead],
];

function headerInit(plaintextBytes: number, overrides: Partial<DatasetHeaderInit> = {}): DatasetHeaderInit {
  return {
    session_id: SESSION,
    dataset_id: crypto.randomUUID(),
    owner_email: 'owner@example.com',
    table: 'orders',
    format: 'csv',
    schema: [
      { name: 'id', type: 'INTEGER' },
      { name: 'amount', type: 'DOUBLE' },
    ],
    row_count: 42,
    plaintext_bytes: plaintextBytes,
    ...overrides,
  };
}

/** `bytes` as a stream of `slice`-byte pieces. */
function streamOf(bytes: Uint8Array, slice = Math.max(bytes.byteLength, 1)): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream({
    pull(controller) {
      if (offset >= bytes.byteLength) return controller.close();
      controller.enqueue(bytes.slice(offset, offset + slice));
      offset += slice;
    },
  });
}

/** `bytes` in random-sized pieces (1 byte to 3 records). */
function randomlySliced(bytes: Uint8Array): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream({
    pull(controller) {
      if (offset >= bytes.byteLength) return controller.close();
      const n = 1 + Math.floor(Math.random() ** 3 * 3 * CHUNK);
      controller.enqueue(bytes.slice(offset, offset + n));
      offset += n;
    },
  });
}

async function collect(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}

interface Encrypted {
  file: Uint8Array;
  key: Uint8Array;
  init: DatasetHeaderInit;
  plaintext: Uint8Array;
}

async function encrypted(plaintext: Uint8Array, options: { chunkBytes?: number; key?: Uint8Array; init?: Partial<DatasetHeaderInit>; aead?: ChunkAead } = {}): Promise<Encrypted> {
  const key = options.key ?? generateDataKey();
  const init = headerInit(plaintext.byteLength, options.init);
  const file = await collect(encryptDataset({ header: init, key, plaintext: streamOf(plaintext), chunkBytes: options.chunkBytes ?? CHUNK, aead: options.aead }));
  return { file, key, init, plaintext };
}

/** The header end and every record's [start, end) in a well-formed file. */
function layout(file: Uint8Array): { offset: number; records: Array<[number, number]> } {
  const { offset } = readDatasetHeader(file);
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const records: Array<[number, number]> = [];
  for (let at = offset; at < file.byteLength; ) {
    const end = at + 12 + view.getUint32(at);
    records.push([at, end]);
    at = end;
  }
  return { offset, records };
}

function flipBit(file: Uint8Array, at: number, bit = 0): Uint8Array {
  const out = file.slice();
  out[at]! ^= 1 << bit;
  return out;
}

/** The code a rejection carries, or a description of what happened instead. */
async function codeOf(work: Promise<unknown>): Promise<string> {
  try {
    await work;
    return 'no error';
  } catch (error) {
    return error instanceof CleanroomError ? error.code : `not a CleanroomError: ${String(error)}`;
  }
}

async function decryptAll(file: Uint8Array | ReadableStream<Uint8Array>, key: Uint8Array, expect: { session_id: string; dataset_id: string }, aead?: ChunkAead) {
  const ciphertext = file instanceof Uint8Array ? streamOf(file, 4096) : file;
  const { header, plaintext } = decryptDataset({ key, ciphertext, expect, aead });
  const bytes = await collect(plaintext);
  return { header: await header, bytes };
}

const expectOf = (init: DatasetHeaderInit) => ({ session_id: init.session_id, dataset_id: init.dataset_id });

// ---------------------------------------------------------------------------------------------
// Round trips

const roundTrips: Array<{ name: string; size: number; chunkBytes?: number; inSlice?: number | 'random'; outSlice?: number | 'random' }> = [
  { name: 'empty plaintext (one empty last record)', size: 0 },
  { name: '1 byte', size: 1 },
  { name: 'exactly one chunk', size: CHUNK },
  { name: 'one chunk and 1 byte', size: CHUNK + 1 },
  { name: 'several chunks and a short last one', size: 3 * CHUNK + 5 },
  { name: 'an exact multiple of the chunk size', size: 3 * CHUNK },
  { name: 'default 1 MiB chunks, one chunk and 1 byte', size: 1024 * 1024 + 1, chunkBytes: 1024 * 1024 },
  { name: '1-byte input slicing both ways', size: CHUNK + 3, inSlice: 1, outSlice: 1 },
  { name: 'random input slicing both ways', size: 5 * CHUNK + 777, inSlice: 'random', outSlice: 'random' },
];

for (const [aeadName, aead] of AEADS) {
  for (const { name, size, chunkBytes = CHUNK, inSlice, outSlice } of roundTrips) {
    test(`dataset-format round trip (${aeadName}): ${name} decrypts to the same bytes and header`, async (t) => {
      const plaintext = randomBytes(size);
      const key = generateDataKey();
      const init = headerInit(size);
      const source = inSlice === 'random' ? randomlySliced(plaintext) : streamOf(plaintext, inSlice);
      const file = await collect(encryptDataset({ header: init, key, plaintext: source, chunkBytes, aead }));
      const { records } = layout(file);
      t.is(records.length, Math.max(1, Math.ceil(size / chunkBytes)));
      t.true(
        records.slice(0, -1).every(([s, e]) => e - s === 12 + chunkBytes + 16),
        'every record but the last is full',
      );
      t.is(file.byteLength, datasetCiphertextBytes(readDatasetHeader(file).header));
      const ciphertext = outSlice === 'random' ? randomlySliced(file) : streamOf(file, outSlice);
      const out = await decryptAll(ciphertext, key, expectOf(init), aead);
      t.deepEqual(out.bytes, new Uint8Array(plaintext));
      t.like(out.header, { ...init, v: 1, alg: 'A256GCM-STREAM', chunk_bytes: chunkBytes });
    });
  }
}

test('dataset-format: the default chunk size is 1 MiB', async (t) => {
  const init = headerInit(10);
  const file = await collect(encryptDataset({ header: init, key: generateDataKey(), plaintext: streamOf(randomBytes(10)) }));
  t.is(readDatasetHeader(file).header.chunk_bytes, 1024 * 1024);
});

test('dataset-format: the file starts with the magic, a u32 header length and canonical JSON', async (t) => {
  const { file } = await encrypted(randomBytes(100));
  t.deepEqual(file.subarray(0, 8), MAGIC);
  t.deepEqual([...MAGIC], [0x43, 0x52, 0x44, 0x53, 0, 0, 0, 1]);
  const { header, headerBytes, offset } = readDatasetHeader(file);
  t.is(new DataView(file.buffer).getUint32(8), headerBytes.byteLength);
  t.is(offset, 12 + headerBytes.byteLength);
  const text = new TextDecoder().decode(headerBytes);
  t.is(text, JSON.stringify(Object.fromEntries(Object.entries(header).sort(([a], [b]) => (a < b ? -1 : 1)))));
  t.regex(header.nonce_prefix, /^[A-Za-z0-9_-]{10}$/);
});

test('dataset-format: two encryptions of the same plaintext under the same key differ (fresh nonce prefix)', async (t) => {
  const plaintext = randomBytes(1000);
  const key = generateDataKey();
  const init = headerInit(1000);
  const a = await collect(encryptDataset({ header: init, key, plaintext: streamOf(plaintext) }));
  const b = await collect(encryptDataset({ header: init, key, plaintext: streamOf(plaintext) }));
  t.notDeepEqual(readDatasetHeader(a).header.nonce_prefix, readDatasetHeader(b).header.nonce_prefix);
  t.notDeepEqual(a, b);
});

test('dataset-format: an explicit nonce prefix reproduces the exact bytes', async (t) => {
  const plaintext = randomBytes(CHUNK + 9);
  const key = generateDataKey();
  const init = headerInit(plaintext.byteLength);
  const noncePrefix = randomBytes(7);
  const run = () => collect(encryptDataset({ header: init, key, plaintext: randomlySliced(plaintext), chunkBytes: CHUNK, noncePrefix }));
  t.deepEqual(await run(), await run());
});

test('dataset-format: generateDataKey returns 32 fresh random bytes', (t) => {
  const a = generateDataKey();
  t.is(a.byteLength, 32);
  t.notDeepEqual(a, generateDataKey());
});

test('dataset-format: recordCount is ceil(plaintext / chunk) and at least one', (t) => {
  t.is(recordCount({ plaintext_bytes: 0, chunk_bytes: CHUNK }), 1);
  t.is(recordCount({ plaintext_bytes: CHUNK, chunk_bytes: CHUNK }), 1);
  t.is(recordCount({ plaintext_bytes: CHUNK + 1, chunk_bytes: CHUNK }), 2);
});

// ---------------------------------------------------------------------------------------------
// Tampering: every attack gets its own code

interface Fixture {
  /** Four records: three full, one of 100 bytes. */
  main: Encrypted;
  /** Another dataset of the same session, same key and same size. */
  sibling: Encrypted;
  /** An empty dataset (one empty record). */
  empty: Encrypted;
}

interface Attack {
  file: Uint8Array;
  key?: Uint8Array;
}

function setLength(file: Uint8Array, at: number, length: number): Uint8Array {
  const out = file.slice();
  new DataView(out.buffer).setUint32(at, length);
  return out;
}

/** `file` with its header replaced by `text` (a new length field, records unchanged). */
function withHeaderText(file: Uint8Array, text: string): Uint8Array {
  const { offset } = readDatasetHeader(file);
  const header = new TextEncoder().encode(text);
  const preamble = new Uint8Array(12);
  preamble.set(MAGIC);
  new DataView(preamble.buffer).setUint32(8, header.byteLength);
  return concat(preamble, header, file.subarray(offset));
}

function headerJson(file: Uint8Array): Record<string, unknown> {
  return JSON.parse(new TextDecoder().decode(readDatasetHeader(file).headerBytes));
}

function canonical(value: Record<string, unknown>): string {
  return JSON.stringify(Object.fromEntries(Object.entries(value).sort(([a], [b]) => (a < b ? -1 : 1))));
}

const attacks: Array<[string, (f: Fixture) => Attack | Promise<Attack>, ErrorCode]> = [
  [
    'a flipped bit in a middle record ciphertext',
    ({ main }) => {
      const [start] = layout(main.file).records[1]!;
      return { file: flipBit(main.file, start + 12 + 1000, 3) };
    },
    'DATASET_CHUNK_TAMPERED',
  ],
  [
    'a flipped bit in a record GCM tag',
    ({ main }) => {
      const [, end] = layout(main.file).records[2]!;
      return { file: flipBit(main.file, end - 1, 7) };
    },
    'DATASET_CHUNK_TAMPERED',
  ],
  [
    'a flipped bit in the short last record',
    ({ main }) => {
      const [start] = layout(main.file).records[3]!;
      return { file: flipBit(main.file, start + 12) };
    },
    'DATASET_CHUNK_TAMPERED',
  ],
  [
    'a flipped bit in the first record of an empty dataset',
    ({ empty }) => {
      const [start] = layout(empty.file).records[0]!;
      return { file: flipBit(empty.file, start + 12) };
    },
    'DATASET_CHUNK_TAMPERED',
  ],
  // The header stays a valid header ("orders" becomes "orderr"), so steps 1-3 pass; its hash is
  // the stream tag of every record, so record 0 is reported as belonging to another stream.
  [
    'a flipped bit in the header that leaves it valid',
    ({ main }) => {
      const at = Buffer.from(main.file).indexOf('"table":"orders"') + '"table":"orders'.length - 1;
      return { file: flipBit(main.file, at, 0) };
    },
    'DATASET_CHUNK_FOREIGN',
  ],
  ['a flipped bit in the header that breaks its JSON', ({ main }) => ({ file: flipBit(main.file, 12, 1) }), 'DATASET_MALFORMED'],
  [
    'a flipped bit in a record stream tag',
    ({ main }) => {
      const [start] = layout(main.file).records[1]!;
      return { file: flipBit(main.file, start + 4) };
    },
    'DATASET_CHUNK_FOREIGN',
  ],
  ['a record length over chunk_bytes + 16', ({ main }) => ({ file: flipBit(main.file, layout(main.file).records[1]![0], 7) }), 'DATASET_CHUNK_TAMPERED'],
  ['a record length under 16', ({ main }) => ({ file: setLength(main.file, layout(main.file).records[0]![0], 15) }), 'DATASET_CHUNK_TAMPERED'],
  ['truncated at a record boundary', ({ main }) => ({ file: main.file.subarray(0, layout(main.file).records[1]![1]) }), 'DATASET_TRUNCATED'],
  ['truncated inside a record body', ({ main }) => ({ file: main.file.subarray(0, layout(main.file).records[1]![0] + 500) }), 'DATASET_TRUNCATED'],
  ['truncated inside a record length field', ({ main }) => ({ file: main.file.subarray(0, layout(main.file).records[2]![0] + 2) }), 'DATASET_TRUNCATED'],
  ['truncated inside a record stream tag', ({ main }) => ({ file: main.file.subarray(0, layout(main.file).records[2]![0] + 7) }), 'DATASET_TRUNCATED'],
  ['the last record dropped', ({ main }) => ({ file: main.file.subarray(0, layout(main.file).records[3]![0]) }), 'DATASET_TRUNCATED'],
  ['the last byte dropped', ({ main }) => ({ file: main.file.subarray(0, main.file.byteLength - 1) }), 'DATASET_TRUNCATED'],
  ['truncated inside the header', ({ main }) => ({ file: main.file.subarray(0, 40) }), 'DATASET_TRUNCATED'],
  ['truncated inside the preamble', ({ main }) => ({ file: main.file.subarray(0, 10) }), 'DATASET_TRUNCATED'],
  ['no bytes at all', () => ({ file: new Uint8Array(0) }), 'DATASET_TRUNCATED'],
  [
    'two records swapped',
    ({ main }) => {
      const [r0, r1, r2, r3] = layout(main.file).records.map(([s, e]) => main.file.subarray(s, e));
      return { file: concat(main.file.subarray(0, layout(main.file).offset), r1!, r0!, r2!, r3!) };
    },
    'DATASET_CHUNK_REORDERED',
  ],
  [
    'the last record swapped with a middle one',
    ({ main }) => {
      const [r0, r1, r2, r3] = layout(main.file).records.map(([s, e]) => main.file.subarray(s, e));
      return { file: concat(main.file.subarray(0, layout(main.file).offset), r0!, r3!, r2!, r1!) };
    },
    'DATASET_CHUNK_REORDERED',
  ],
  [
    'a middle record dropped',
    ({ main }) => {
      const { records } = layout(main.file);
      return { file: concat(main.file.subarray(0, records[1]![0]), main.file.subarray(records[2]![0])) };
    },
    'DATASET_CHUNK_REORDERED',
  ],
  [
    'a record repeated',
    ({ main }) => {
      const { records } = layout(main.file);
      return { file: concat(main.file.subarray(0, records[2]![0]), main.file.subarray(...records[1]!), main.file.subarray(records[2]![0])) };
    },
    'DATASET_CHUNK_REORDERED',
  ],
  [
    'a record spliced in from another dataset under the same key',
    ({ main, sibling }) => {
      const ours = layout(main.file).records;
      const theirs = layout(sibling.file).records;
      return { file: concat(main.file.subarray(0, ours[1]![0]), sibling.file.subarray(...theirs[1]!), main.file.subarray(ours[1]![1])) };
    },
    'DATASET_CHUNK_FOREIGN',
  ],
  // The stream tag is in clear, so a splicer can rewrite it; the AAD still differs.
  [
    'a spliced record with its stream tag rewritten to ours',
    ({ main, sibling }) => {
      const ours = layout(main.file).records;
      const theirs = sibling.file.slice(...layout(sibling.file).records[1]!);
      theirs.set(main.file.subarray(ours[1]![0] + 4, ours[1]![0] + 12), 4);
      return { file: concat(main.file.subarray(0, ours[1]![0]), theirs, main.file.subarray(ours[1]![1])) };
    },
    'DATASET_CHUNK_TAMPERED',
  ],
  [
    "another dataset's header in front of our records",
    ({ main, sibling }) => ({
      file: concat(sibling.file.subarray(0, layout(sibling.file).offset), main.file.subarray(layout(main.file).offset)),
    }),
    'DATASET_WRONG_DATASET',
  ],
  [
    'an entire file from another session',
    async ({ main }) => {
      const other = await encrypted(main.plaintext, { key: main.key, init: { session_id: 'session-b', dataset_id: main.init.dataset_id } });
      return { file: other.file };
    },
    'DATASET_WRONG_SESSION',
  ],
  ['a file of this session for another dataset id', async ({ main }) => ({ file: (await encrypted(main.plaintext, { key: main.key })).file }), 'DATASET_WRONG_DATASET'],
  ['bytes appended after the last record', ({ main }) => ({ file: concat(main.file, new Uint8Array([0])) }), 'DATASET_TRAILING_DATA'],
  ['a whole record appended after the last', ({ main }) => ({ file: concat(main.file, main.file.subarray(...layout(main.file).records[0]!)) }), 'DATASET_TRAILING_DATA'],
  ['bytes appended after the only record of an empty dataset', ({ empty }) => ({ file: concat(empty.file, new Uint8Array(16)) }), 'DATASET_TRAILING_DATA'],
  ['a header and no records', ({ main }) => ({ file: main.file.subarray(0, layout(main.file).offset) }), 'DATASET_EMPTY'],
  ['an empty dataset with its record removed', ({ empty }) => ({ file: empty.file.subarray(0, layout(empty.file).offset) }), 'DATASET_EMPTY'],
  ['a bad magic', ({ main }) => ({ file: concat(new TextEncoder().encode('PK\u0003\u0004'), main.file.subarray(4)) }), 'DATASET_MALFORMED'],
  ['another format version', ({ main }) => ({ file: flipBit(main.file, 7, 1) }), 'DATASET_MALFORMED'],
  ['a plaintext CSV instead of a dataset', () => ({ file: new TextEncoder().encode('id,amount\n1,2.5\n') }), 'DATASET_MALFORMED'],
  ['a header length over 64 KiB', ({ main }) => ({ file: setLength(main.file, 8, 64 * 1024 + 1) }), 'DATASET_MALFORMED'],
  ['a header that is not canonical (whitespace)', ({ main }) => ({ file: withHeaderText(main.file, JSON.stringify(headerJson(main.file), null, 1)) }), 'DATASET_MALFORMED'],
  ['a header with keys out of order', ({ main }) => ({ file: withHeaderText(main.file, JSON.stringify(Object.fromEntries(Object.entries(headerJson(main.file)).reverse()))) }), 'DATASET_MALFORMED'],
  ['a header with a duplicate key', ({ main }) => ({ file: withHeaderText(main.file, canonical(headerJson(main.file)).replace('"v":1}', '"v":1,"v":1}')) }), 'DATASET_MALFORMED'],
  ['a header with an extra member', ({ main }) => ({ file: withHeaderText(main.file, canonical({ ...headerJson(main.file), admin: true })) }), 'DATASET_MALFORMED'],
  ['a header with chunk_bytes under 64 KiB', ({ main }) => ({ file: withHeaderText(main.file, canonical({ ...headerJson(main.file), chunk_bytes: 1024 })) }), 'DATASET_MALFORMED'],
  ['a header with another algorithm', ({ main }) => ({ file: withHeaderText(main.file, canonical({ ...headerJson(main.file), alg: 'A128GCM-STREAM' })) }), 'DATASET_MALFORMED'],
  // Header versions: 1 names no dialect, 2 names one; nothing else is read.
  ['a version 1 header that names a dialect', ({ main }) => ({ file: withHeaderText(main.file, canonical({ ...headerJson(main.file), csv: SORTED_SEMICOLON })) }), 'DATASET_MALFORMED'],
  ['a version 2 header without a dialect', ({ main }) => ({ file: withHeaderText(main.file, canonical({ ...headerJson(main.file), v: 2 })) }), 'DATASET_MALFORMED'],
  ['a version 3 header', ({ main }) => ({ file: withHeaderText(main.file, canonical({ ...headerJson(main.file), v: 3, csv: SORTED_SEMICOLON })) }), 'DATASET_MALFORMED'],
  [
    'a version 2 header with a delimiter outside the set',
    ({ main }) => ({ file: withHeaderText(main.file, canonical({ ...headerJson(main.file), v: 2, csv: { ...SORTED_SEMICOLON, delimiter: "'" } })) }),
    'DATASET_MALFORMED',
  ],
  [
    'a header with a non-canonical nonce prefix',
    ({ main }) => {
      const header = headerJson(main.file);
      const prefix = header.nonce_prefix as string;
      // The last of 10 base64url characters carries 2 data bits and 4 spare bits that must be zero.
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
      const spare = alphabet[alphabet.indexOf(prefix.at(-1)!) | 1]!;
      return { file: withHeaderText(main.file, canonical({ ...header, nonce_prefix: prefix.slice(0, 9) + spare })) };
    },
    'DATASET_MALFORMED',
  ],
  [
    'a header that is not UTF-8',
    ({ main }) => ({ file: concat(main.file.subarray(0, 8), new Uint8Array([0, 0, 0, 2, 0xc3, 0x28]), main.file.subarray(layout(main.file).offset)) }),
    'DATASET_MALFORMED',
  ],
  ['the right file under the wrong key', ({ main }) => ({ file: main.file, key: generateDataKey() }), 'DATASET_CHUNK_TAMPERED'],
];

for (const [aeadName, aead] of AEADS) {
  let fixture: Promise<Fixture> | undefined;
  const getFixture = () =>
    (fixture ??= (async () => {
      const main = await encrypted(randomBytes(3 * CHUNK + 100), { aead });
      const sibling = await encrypted(randomBytes(3 * CHUNK + 100), { key: main.key, aead });
      const empty = await encrypted(new Uint8Array(0), { key: main.key, init: { dataset_id: main.init.dataset_id }, aead });
      return { main, sibling, empty };
    })());
  for (const [name, build, code] of attacks) {
    test(`dataset-format attack (${aeadName}): ${name} is refused with ${code}`, async (t) => {
      const f = await getFixture();
      const attack = await build(f);
      const { main } = f;
      t.is(await codeOf(decryptAll(attack.file, attack.key ?? main.key, expectOf(main.init), aead)), code);
      // The same verdict whatever the input slicing.
      t.is(await codeOf(decryptAll(streamOf(attack.file, 1 + (attack.file.byteLength % 997)), attack.key ?? main.key, expectOf(main.init), aead)), code);
    });
  }
}

const isDatasetCode = (code: string) => /^DATASET_[A-Z_]+$/.test(code);

test('dataset-format: any single corrupted byte anywhere in the file is refused with a DATASET_ code', async (t) => {
  const main = await encrypted(randomBytes(CHUNK + 300));
  const { offset, records } = layout(main.file);
  // Every byte of the preamble, header and record fronts, plus random bytes of the bodies.
  const positions = [
    ...Array.from({ length: offset }, (_, i) => i),
    ...records.flatMap(([s]) => Array.from({ length: 12 }, (_, i) => s + i)),
    ...Array.from({ length: 100 }, () => offset + Math.floor(Math.random() * (main.file.byteLength - offset))),
  ];
  const seen = new Set<string>();
  for (const at of positions) {
    const file = main.file.slice();
    file[at]! ^= 1 + Math.floor(Math.random() * 255);
    const code = await codeOf(decryptAll(file, main.key, expectOf(main.init)));
    seen.add(code);
    if (!isDatasetCode(code)) t.fail(`byte ${at}: ${code}`);
  }
  t.log([...seen].sort().join(', '));
  t.true(seen.size >= 4, 'the corruptions hit several checks');
});

test('dataset-format: every strict prefix of a file is refused with a DATASET_ code', async (t) => {
  const main = await encrypted(randomBytes(CHUNK + 300));
  const lengths = [...Array.from({ length: layout(main.file).offset + 40 }, (_, i) => i), ...Array.from({ length: 100 }, () => Math.floor(Math.random() * main.file.byteLength))];
  for (const length of lengths) {
    const code = await codeOf(decryptAll(main.file.subarray(0, length), main.key, expectOf(main.init)));
    if (!isDatasetCode(code)) t.fail(`prefix of ${length} bytes: ${code}`);
  }
  t.pass();
});

test('dataset-format: the untouched fixture files decrypt (the attacks above start from valid files)', async (t) => {
  const main = await encrypted(randomBytes(3 * CHUNK + 100));
  t.is(layout(main.file).records.length, 4);
  t.deepEqual((await decryptAll(main.file, main.key, expectOf(main.init))).bytes, new Uint8Array(main.plaintext));
});

test('dataset-format: plaintext is released record by record, never from a record that failed', async (t) => {
  const main = await encrypted(randomBytes(3 * CHUNK + 100));
  const [start] = layout(main.file).records[2]!;
  const reader = decryptDataset({ key: main.key, ciphertext: streamOf(flipBit(main.file, start + 20), 1000), expect: expectOf(main.init) }).plaintext.getReader();
  const released: Uint8Array[] = [];
  const error = await (async () => {
    for (;;) {
      try {
        const { done, value } = await reader.read();
        if (done) return 'closed';
        released.push(value);
      } catch (e) {
        return e;
      }
    }
  })();
  t.is((error as CleanroomError).code, 'DATASET_CHUNK_TAMPERED');
  t.deepEqual(
    released.map((c) => c.byteLength),
    [CHUNK, CHUNK],
  );
  t.deepEqual(concat(...released), new Uint8Array(main.plaintext.subarray(0, 2 * CHUNK)));
});

test('dataset-format: a tampered first record releases no plaintext at all', async (t) => {
  const main = await encrypted(randomBytes(CHUNK + 100));
  const [start] = layout(main.file).records[0]!;
  const reader = decryptDataset({ key: main.key, ciphertext: streamOf(flipBit(main.file, start + 30)), expect: expectOf(main.init) }).plaintext.getReader();
  const error = await reader.read().then(
    () => 'released something',
    (e: unknown) => e,
  );
  t.is((error as CleanroomError).code, 'DATASET_CHUNK_TAMPERED');
});

test('dataset-format: the header promise rejects with the stream error when the header fails, and resolves when a record fails', async (t) => {
  const main = await encrypted(randomBytes(CHUNK + 100));
  const headerFail = decryptDataset({ key: main.key, ciphertext: streamOf(main.file), expect: { ...expectOf(main.init), session_id: 'other' } });
  t.is(await codeOf(headerFail.header), 'DATASET_WRONG_SESSION');
  t.is(await codeOf(collect(headerFail.plaintext)), 'DATASET_WRONG_SESSION');
  const [start] = layout(main.file).records[1]!;
  const recordFail = decryptDataset({ key: main.key, ciphertext: streamOf(flipBit(main.file, start + 40)), expect: expectOf(main.init) });
  t.like(await recordFail.header, { dataset_id: main.init.dataset_id });
  t.is(await codeOf(collect(recordFail.plaintext)), 'DATASET_CHUNK_TAMPERED');
});

test('dataset-format: the header is available before the plaintext is read', async (t) => {
  const main = await encrypted(randomBytes(3 * CHUNK));
  const { header, plaintext } = decryptDataset({ key: main.key, ciphertext: streamOf(main.file, 100), expect: expectOf(main.init) });
  t.like(await header, { table: 'orders', row_count: 42, plaintext_bytes: 3 * CHUNK });
  await plaintext.cancel();
});

test('dataset-format: a failure cancels the ciphertext stream', async (t) => {
  const main = await encrypted(randomBytes(3 * CHUNK));
  const [start] = layout(main.file).records[0]!;
  const tampered = flipBit(main.file, start + 50);
  let cancelled: unknown;
  let offset = 0;
  const ciphertext = new ReadableStream<Uint8Array>({
    pull(controller) {
      controller.enqueue(tampered.slice(offset, offset + 1000));
      offset += 1000;
    },
    cancel(reason) {
      cancelled = reason;
    },
  });
  t.is(await codeOf(collect(decryptDataset({ key: main.key, ciphertext, expect: expectOf(main.init) }).plaintext)), 'DATASET_CHUNK_TAMPERED');
  t.is((cancelled as CleanroomError).code, 'DATASET_CHUNK_TAMPERED');
  t.true(offset < tampered.byteLength, 'stopped reading at the failure');
});

test('dataset-format: an error of the ciphertext stream itself passes through unchanged', async (t) => {
  const main = await encrypted(randomBytes(CHUNK + 100));
  const failure = new CleanroomError('OBJECT_STORE_UNAVAILABLE', 'read failed');
  const ciphertext = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(main.file.slice(0, layout(main.file).records[1]![0] + 10));
      controller.error(failure);
    },
  });
  const error = await collect(decryptDataset({ key: main.key, ciphertext, expect: expectOf(main.init) }).plaintext).catch((e: unknown) => e);
  t.is(error, failure);
});

test('dataset-format: cancelling the plaintext cancels the ciphertext stream', async (t) => {
  const main = await encrypted(randomBytes(3 * CHUNK));
  let cancelled = false;
  let offset = 0;
  const ciphertext = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (offset >= main.file.byteLength) return controller.close();
      controller.enqueue(main.file.slice(offset, offset + 1000));
      offset += 1000;
    },
    cancel() {
      cancelled = true;
    },
  });
  const reader = decryptDataset({ key: main.key, ciphertext, expect: expectOf(main.init) }).plaintext.getReader();
  await reader.read();
  await reader.cancel();
  t.true(cancelled);
});

// ---------------------------------------------------------------------------------------------
// The encryptor

const lengthMismatches: Array<[string, number, number]> = [
  ['a plaintext one byte short', 3 * CHUNK, 3 * CHUNK - 1],
  ['a plaintext a whole chunk short', 3 * CHUNK, 2 * CHUNK],
  ['an empty plaintext where bytes were announced', 10, 0],
  ['a plaintext one byte long', 3 * CHUNK, 3 * CHUNK + 1],
  ['bytes where an empty plaintext was announced', 0, 1],
];
for (const [name, announced, actual] of lengthMismatches) {
  test(`encryptDataset: ${name} errors the output with DATASET_MALFORMED and never completes a file`, async (t) => {
    const chunks: Uint8Array[] = [];
    const reader = encryptDataset({ header: headerInit(announced), key: generateDataKey(), plaintext: streamOf(randomBytes(actual), 1000), chunkBytes: CHUNK }).getReader();
    const error = await (async () => {
      for (;;) {
        try {
          const { done, value } = await reader.read();
          if (done) return 'completed';
          chunks.push(value);
        } catch (e) {
          return e;
        }
      }
    })();
    t.is((error as CleanroomError).code, 'DATASET_MALFORMED');
    t.true(chunks.length - 1 < recordCount({ plaintext_bytes: announced, chunk_bytes: CHUNK }), 'the last record was not emitted');
  });
}

test('encryptDataset: an error of the plaintext stream passes through unchanged', async (t) => {
  const failure = new Error('disk read failed');
  const plaintext = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new Uint8Array(100));
      controller.error(failure);
    },
  });
  t.is(await collect(encryptDataset({ header: headerInit(1000), key: generateDataKey(), plaintext })).catch((e: unknown) => e), failure);
});

test('encryptDataset: a CSV dialect makes a version 2 header, read back as written; none makes version 1', async (t) => {
  const withDialect = await encrypted(randomBytes(100), { init: { csv: SEMICOLON } });
  const read = readDatasetHeader(withDialect.file).header;
  t.is(read.v, 2);
  t.deepEqual(read.csv, SEMICOLON);
  t.is((await decryptAll(withDialect.file, withDialect.key, expectOf(withDialect.init))).bytes.byteLength, 100);
  const without = await encrypted(randomBytes(100));
  t.is(readDatasetHeader(without.file).header.v, 1);
  t.false('csv' in readDatasetHeader(without.file).header);
  // The size announced before encrypting holds for a version 2 header too.
  const header = readDatasetHeader(withDialect.file).header;
  t.is(datasetCiphertextBytes(header), withDialect.file.byteLength);
});

test('dataset-format: DECIMAL(p,s) column types are accepted within bounds and refused outside them', async (t) => {
  const ok = await encrypted(randomBytes(10), {
    init: {
      schema: [
        { name: 'price', type: 'DECIMAL(38,2)' },
        { name: 'rate', type: 'DECIMAL(1,1)' },
      ],
    },
  });
  t.deepEqual(
    readDatasetHeader(ok.file).header.schema.map((c) => c.type),
    ['DECIMAL(38,2)', 'DECIMAL(1,1)'],
  );
  for (const type of ['DECIMAL(39,2)', 'DECIMAL(0,0)', 'DECIMAL(4,5)', 'DECIMAL(10, 2)', 'DECIMAL(010,2)', 'DECIMAL(10,2);DROP', 'decimal(10,2)', 'DECIMAL']) {
    t.throws(
      () => encryptDataset({ header: headerInit(0, { schema: [{ name: 'x', type: type as 'VARCHAR' }] }), key: generateDataKey(), plaintext: streamOf(new Uint8Array(0)) }),
      { instanceOf: TypeError },
      type,
    );
  }
});

const misuse: Array<[string, () => unknown]> = [
  ['a CSV dialect on a Parquet dataset', () => encryptDataset({ header: headerInit(0, { format: 'parquet', csv: SEMICOLON }), key: generateDataKey(), plaintext: streamOf(new Uint8Array(0)) })],
  ['a 16-byte key', () => encryptDataset({ header: headerInit(0), key: new Uint8Array(16), plaintext: streamOf(new Uint8Array(0)) })],
  ['a key that is not bytes', () => encryptDataset({ header: headerInit(0), key: 'secret' as unknown as Uint8Array, plaintext: streamOf(new Uint8Array(0)) })],
  ['chunkBytes under 64 KiB', () => encryptDataset({ header: headerInit(0), key: generateDataKey(), plaintext: streamOf(new Uint8Array(0)), chunkBytes: 1024 })],
  ['chunkBytes over 16 MiB', () => encryptDataset({ header: headerInit(0), key: generateDataKey(), plaintext: streamOf(new Uint8Array(0)), chunkBytes: 16 * 1024 * 1024 + 1 })],
  ['a 6-byte nonce prefix', () => encryptDataset({ header: headerInit(0), key: generateDataKey(), plaintext: streamOf(new Uint8Array(0)), noncePrefix: new Uint8Array(6) })],
  ['a header with a bad table name', () => encryptDataset({ header: headerInit(0, { table: 'duckdb_settings' }), key: generateDataKey(), plaintext: streamOf(new Uint8Array(0)) })],
  ['a header with an extra member', () => encryptDataset({ header: { ...headerInit(0), admin: true } as DatasetHeaderInit, key: generateDataKey(), plaintext: streamOf(new Uint8Array(0)) })],
  [
    'a header over 64 KiB',
    () =>
      encryptDataset({
        header: headerInit(0, { schema: Array.from({ length: 256 }, (_, i) => ({ name: `${i}${'é'.repeat(127)}`, type: 'VARCHAR' as const })) }),
        key: generateDataKey(),
        plaintext: streamOf(new Uint8Array(0)),
      }),
  ],
  ['decrypting with a 31-byte key', () => decryptDataset({ key: new Uint8Array(31), ciphertext: streamOf(new Uint8Array(0)), expect: { session_id: 's', dataset_id: 'd' } })],
  ['decrypting without expect', () => decryptDataset({ key: generateDataKey(), ciphertext: streamOf(new Uint8Array(0)) } as never)],
];
for (const [name, call] of misuse) {
  test(`dataset-format misuse: ${name} throws TypeError at once`, (t) => {
    t.throws(call, { instanceOf: TypeError });
  });
}

test('encryptDataset: the caller changing the key array afterwards does not change the output', async (t) => {
  const plaintext = randomBytes(CHUNK + 1);
  const key = generateDataKey();
  const original = key.slice();
  const init = headerInit(plaintext.byteLength);
  const stream = encryptDataset({ header: init, key, plaintext: streamOf(plaintext), chunkBytes: CHUNK });
  key.fill(0);
  const file = await collect(stream);
  t.deepEqual((await decryptAll(file, original, expectOf(init))).bytes, new Uint8Array(plaintext));
});

// ---------------------------------------------------------------------------------------------
// readDatasetHeader

test('readDatasetHeader: peeks the header and the first record offset of a file prefix', async (t) => {
  const main = await encrypted(randomBytes(CHUNK + 1));
  const { header, headerBytes, offset } = readDatasetHeader(main.file.subarray(0, layout(main.file).offset + 3));
  t.like(header, { ...main.init, v: 1, chunk_bytes: CHUNK });
  t.is(offset, layout(main.file).offset);
  t.is(headerBytes.byteLength, offset - 12);
});

const peekRefusals: Array<[string, (file: Uint8Array) => Uint8Array, ErrorCode]> = [
  ['a prefix that stops inside the header', (f) => f.subarray(0, 30), 'DATASET_TRUNCATED'],
  ['a prefix that stops inside the magic', (f) => f.subarray(0, 5), 'DATASET_TRUNCATED'],
  ['a prefix with a bad magic', (f) => concat(new Uint8Array([0x43, 0x52, 0x44, 0x54]), f.subarray(4)), 'DATASET_MALFORMED'],
  ['a short prefix with a bad magic', () => new Uint8Array([0x50, 0x4b]), 'DATASET_MALFORMED'],
];
for (const [name, cut, code] of peekRefusals) {
  test(`readDatasetHeader: ${name} is refused with ${code}`, async (t) => {
    const main = await encrypted(randomBytes(10));
    t.is(await codeOf((async () => readDatasetHeader(cut(main.file)))()), code);
  });
}

// ---------------------------------------------------------------------------------------------
// Bounded memory

test('dataset-format: a 64 MiB stream round-trips through encrypt and decrypt holding only a few chunks', async (t) => {
  const total = 64 * 1024 * 1024;
  const piece = 256 * 1024;
  const key = generateDataKey();
  const init = headerInit(total);
  const sourceHash = createHash('sha256');
  const sinkHash = createHash('sha256');
  let produced = 0;
  let consumed = 0;
  let maxInFlight = 0;
  let peakArrayBuffers = 0;
  const baseline = process.memoryUsage().arrayBuffers;
  const plaintext = new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        if (produced >= total) return controller.close();
        const bytes = randomBytes(piece);
        sourceHash.update(bytes);
        produced += piece;
        maxInFlight = Math.max(maxInFlight, produced - consumed);
        controller.enqueue(bytes);
      },
    },
    { highWaterMark: 0 },
  );
  const ciphertext = encryptDataset({ header: init, key, plaintext, aead: nodeAead });
  const { plaintext: out } = decryptDataset({ key, ciphertext, expect: expectOf(init), aead: nodeAead });
  for await (const chunk of out) {
    sinkHash.update(chunk);
    consumed += chunk.byteLength;
    peakArrayBuffers = Math.max(peakArrayBuffers, process.memoryUsage().arrayBuffers - baseline);
  }
  t.is(consumed, total);
  t.is(sinkHash.digest('hex'), sourceHash.digest('hex'));
  // Bytes read from the source but not yet delivered: everything the two stages buffer between
  // them. A stage that held the whole stream would push this to 64 MiB.
  t.true(maxInFlight <= 6 * 1024 * 1024, `at most ${maxInFlight} plaintext bytes in flight`);
  t.log(`max in flight ${(maxInFlight / 2 ** 20).toFixed(2)} MiB; peak arrayBuffers growth (includes garbage not yet collected) ${(peakArrayBuffers / 2 ** 20).toFixed(1)} MiB`);
});
