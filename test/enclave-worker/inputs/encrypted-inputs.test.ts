import test from 'ava';
import { DuckDBInstance } from '@duckdb/node-api';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { RFC4180_DIALECT, type CsvDialect } from '../../../protocol/csv-dialect.ts';
import { wrapDataKey } from '../../../protocol/data-key.ts';
import { objectKeys, type DatasetFormat, type DatasetSchema, type TaskInput } from '../../../protocol/dataset.ts';
import { encryptDataset, generateDataKey, type DatasetHeaderInit } from '../../../protocol/dataset-format.ts';
import { CleanroomError } from '../../../protocol/errors.ts';
import { nodeAead } from '../../../runtime/aead-node.ts';
import { LocalObjectStore } from '../../../runtime/object-store/local.ts';
import { createExecutor } from '../../../enclave-worker/executor/executor.ts';
import { TestOnlyPlaintextResultSink } from '../../../enclave-worker/executor/plaintext-fixtures.ts';
import { ExecutorPool } from '../../../enclave-worker/executor/pool.ts';
import type { ExecuteRequest, InputSource, InputTarget } from '../../../enclave-worker/executor/ports.ts';
import { detectSandbox } from '../../../enclave-worker/executor/sandbox.ts';
import { EncryptedInputs, type SessionPrivateKeys } from '../../../enclave-worker/inputs/encrypted-inputs.ts';

// Every key is generated here, at test time: the session key pair, each dataset's data key.
const SESSION = 'session-enc';
const OTHER_SESSION = 'session-other';
const OWNER = 'owner@example.com';

async function sessionKeyPair(): Promise<{ privateKey: CryptoKey; publicJwk: JWK; thumbprint: string }> {
  const { privateKey, publicKey } = await generateKeyPair('ECDH-ES+A256KW', { crv: 'P-256' });
  const { kty, crv, x, y } = await exportJWK(publicKey);
  return { privateKey, publicJwk: { kty, crv, x, y, alg: 'ECDH-ES+A256KW', use: 'enc' }, thumbprint: await calculateJwkThumbprint({ kty, crv, x, y } as JWK) };
}

const session = await sessionKeyPair();
const other = await sessionKeyPair();
/** The worker's session keys, as `keys/session-keys.ts` answers: only the session's own key by its thumbprint. */
const sessionKeys: SessionPrivateKeys = {
  async privateKey(sessionId, thumbprint) {
    if (sessionId === SESSION && thumbprint === session.thumbprint) return session.privateKey;
    if (sessionId === OTHER_SESSION && thumbprint === other.thumbprint) return other.privateKey;
    throw new CleanroomError('SESSION_KEY_UNAVAILABLE', 'no such session key');
  },
};

const root = mkdtempSync(join(tmpdir(), 'encrypted-inputs-'));
const objects = new LocalObjectStore(join(root, 'objects'));
const inputs = new EncryptedInputs({ objects, sessionKeys });
test.after.always(() => rmSync(root, { recursive: true, force: true }));

function streamOf(bytes: Uint8Array): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      // Several slices, so nothing depends on one read returning everything.
      for (let i = 0; i < bytes.byteLength; i += 50_000) controller.enqueue(bytes.subarray(i, i + 50_000));
      controller.close();
    },
  });
}

async function collect(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

interface Upload {
  table: string;
  format: DatasetFormat;
  schema: DatasetSchema;
  plaintext: Uint8Array;
  rowCount: number;
  /** A CSV's dialect, registered and in the header alike. */
  csv?: CsvDialect;
  /** What the encrypted header says, where it differs from the registration. */
  header?: Partial<DatasetHeaderInit>;
  chunkBytes?: number;
}

/** Encrypts, stores and registers one dataset of SESSION, as the CLI and control plane would; returns its TaskInput. */
async function upload(spec: Upload): Promise<TaskInput> {
  const datasetId = randomUUID();
  const key = generateDataKey();
  const header: DatasetHeaderInit = {
    session_id: SESSION,
    dataset_id: datasetId,
    owner_email: OWNER,
    table: spec.table,
    format: spec.format,
    ...(spec.csv ? { csv: spec.csv } : {}),
    schema: spec.schema,
    row_count: spec.rowCount,
    plaintext_bytes: spec.plaintext.byteLength,
    ...spec.header,
  };
  const ciphertext = await collect(encryptDataset({ header, key, plaintext: streamOf(spec.plaintext), aead: nodeAead, ...(spec.chunkBytes ? { chunkBytes: spec.chunkBytes } : {}) }));
  const objectKey = objectKeys.dataset(SESSION, datasetId);
  await objects.createOnly(objectKey, ciphertext);
  return {
    dataset_id: datasetId,
    table: spec.table,
    owner_email: OWNER,
    object_key: objectKey,
    format: spec.format,
    ...(spec.csv ? { csv: spec.csv } : {}),
    schema: spec.schema,
    row_count: spec.rowCount,
    ciphertext_bytes: ciphertext.byteLength,
    ciphertext_sha256: createHash('sha256').update(ciphertext).digest('hex'),
    wrapped_key: await wrapDataKey({ key, sessionPublicJwk: session.publicJwk, sessionId: SESSION, datasetId }),
    session_key_thumbprint: session.thumbprint,
  };
}

const PEOPLE_SCHEMA: DatasetSchema = [
  { name: 'id', type: 'INTEGER' },
  { name: 'name', type: 'VARCHAR' },
];
const PEOPLE_CSV = Buffer.from('id,name\n1,"Ada, A."\n2,Bo\n3,Cy\n');
const people = (overrides: Partial<Upload> = {}): Promise<TaskInput> => upload({ table: 'people', format: 'csv', schema: PEOPLE_SCHEMA, plaintext: PEOPLE_CSV, rowCount: 3, ...overrides });

/** Parquet plaintext written by an unrestricted in-process DuckDB, at test time. */
async function parquetBytes(select: string): Promise<Uint8Array> {
  const path = join(root, `${randomUUID()}.parquet`);
  const connection = await (await DuckDBInstance.create(':memory:')).connect();
  await connection.run(`COPY (${select}) TO '${path}' (FORMAT parquet)`);
  connection.closeSync();
  return readFileSync(path);
}

function request(taskInputs: TaskInput[], extra: Partial<ExecuteRequest> = {}): ExecuteRequest {
  return { sessionId: SESSION, queryId: randomUUID(), attempt: 1, sql: 'SELECT 1', inputs: taskInputs, recipients: [], ...extra };
}

function target(): InputTarget {
  return { directory: mkdtempSync(join(root, 'ctx-')) };
}

/** The code materializing `input` fails with (and that it left no file behind). */
async function codeOf(input: TaskInput, source: InputSource = inputs): Promise<string> {
  const into = target();
  try {
    await source.materialize(request([input]), [input.table], into);
    return 'materialized';
  } catch (error) {
    if (readdirSync(into.directory).length > 0) return 'left a file behind';
    return error instanceof CleanroomError ? error.code : `not a CleanroomError: ${String(error)}`;
  }
}

test('encrypted inputs: a dataset is checked, decrypted into the target as its table file, and described', async (t) => {
  const input = await people();
  const into = target();
  const [file] = await inputs.materialize(request([input]), ['people'], into);
  t.deepEqual(file, { name: 'people', file: join(into.directory, 'people.csv'), format: 'csv', columns: PEOPLE_SCHEMA, rowCount: 3 });
  t.deepEqual(readFileSync(file!.file), PEOPLE_CSV);
  t.is(statSync(file!.file).mode & 0o777, 0o400);
  t.deepEqual(await inputs.tableNames(request([input])), ['people']);
});

test('encrypted inputs: a multi-record dataset streams through whole', async (t) => {
  const lines = ['id,name'];
  for (let i = 0; i < 20_000; i++) lines.push(`${i},name ${i}`);
  const plaintext = Buffer.from(`${lines.join('\n')}\n`);
  const input = await people({ plaintext, rowCount: 20_000, chunkBytes: 64 * 1024 });
  const into = target();
  const [file] = await inputs.materialize(request([input]), ['people'], into);
  t.true(plaintext.byteLength > 4 * 64 * 1024);
  t.deepEqual(readFileSync(file!.file), plaintext);
});

/** Flips one bit of the stored object at `offset` (negative: from the end). */
async function flipBit(input: TaskInput, offset: number): Promise<void> {
  const path = join(root, 'objects', ...input.object_key.split('/'));
  const bytes = readFileSync(path);
  const at = offset < 0 ? bytes.byteLength + offset : offset;
  bytes[at]! ^= 0x01;
  rmSync(path);
  writeFileSync(path, bytes);
}

test('encrypted inputs: one flipped bit anywhere in the object → DATASET_HASH_MISMATCH, and no file is left', async (t) => {
  const lines = ['id,name'];
  for (let i = 0; i < 20_000; i++) lines.push(`${i},name ${i}`);
  const plaintext = Buffer.from(`${lines.join('\n')}\n`);
  // In the header, in the first record, in a middle record (after plaintext was written), in the last.
  for (const offset of [20, 400, 150_000, -3]) {
    const input = await people({ plaintext, rowCount: 20_000, chunkBytes: 64 * 1024 });
    await flipBit(input, offset);
    t.is(await codeOf(input), 'DATASET_HASH_MISMATCH', String(offset));
  }
});

test('encrypted inputs: a wrapped key swapped in from another dataset → DATASET_KEY_UNWRAP', async (t) => {
  const a = await people();
  const b = await people();
  t.is(await codeOf({ ...a, wrapped_key: b.wrapped_key }), 'DATASET_KEY_UNWRAP');
});

test('encrypted inputs: an object encrypted for another session → DATASET_WRONG_SESSION', async (t) => {
  // Its header names the other session; the key is wrapped to this one and the hash registered.
  t.is(await codeOf(await people({ header: { session_id: OTHER_SESSION } })), 'DATASET_WRONG_SESSION');
});

test('encrypted inputs: an object encrypted under another dataset id → DATASET_WRONG_DATASET', async (t) => {
  t.is(await codeOf(await people({ header: { dataset_id: randomUUID() } })), 'DATASET_WRONG_DATASET');
});

test('encrypted inputs: a task input that does not match the stored object fails with its code', async (t) => {
  const input = await people();
  t.is(await codeOf({ ...input, dataset_id: randomUUID(), object_key: objectKeys.dataset(SESSION, randomUUID()) }), 'DATASET_NOT_FOUND');
  // Not where the session keeps its datasets, even if something is stored there.
  t.is(await codeOf({ ...input, object_key: objectKeys.dataset(OTHER_SESSION, input.dataset_id) }), 'DATASET_NOT_FOUND');
  t.is(await codeOf({ ...input, ciphertext_bytes: input.ciphertext_bytes + 1 }), 'DATASET_HASH_MISMATCH');
  t.is(await codeOf({ ...input, ciphertext_sha256: 'ab'.repeat(32) }), 'DATASET_HASH_MISMATCH');
  t.is(await codeOf({ ...input, session_key_thumbprint: other.thumbprint }), 'SESSION_KEY_UNAVAILABLE');
  t.is(await codeOf({ ...input, owner_email: 'mallory@example.com' }), 'DATASET_MALFORMED');
  t.is(
    await codeOf({
      ...input,
      schema: [
        { name: 'id', type: 'BIGINT' },
        { name: 'name', type: 'VARCHAR' },
      ],
    }),
    'DATASET_SCHEMA_MISMATCH',
  );
  t.is(await codeOf({ ...input, format: 'parquet' }), 'DATASET_SCHEMA_MISMATCH');
  t.is(await codeOf({ ...input, row_count: 4 }), 'DATASET_ROW_COUNT_MISMATCH');
  // The same object still materializes when nothing was changed.
  t.is(await codeOf(input), 'materialized');
});

const SEMICOLON: CsvDialect = { delimiter: ';', quote: '"', escape: '"', header: true };

test("encrypted inputs: a CSV's dialect comes from its authenticated header and reaches the loader", async (t) => {
  const input = await people({ csv: SEMICOLON, plaintext: Buffer.from('id;name\n1;"Ada; A."\n2;Bo\n3;Cy\n') });
  const [file] = await inputs.materialize(request([input]), ['people'], target());
  t.deepEqual(file!.csv, SEMICOLON);
  // A header without a dialect (version 1, written before dialects were recorded) loads as RFC 4180.
  const old = await people();
  const [oldFile] = await inputs.materialize(request([old]), ['people'], target());
  t.is(oldFile!.csv, undefined);
});

test('encrypted inputs: a header whose CSV dialect differs from the registration → DATASET_SCHEMA_MISMATCH', async (t) => {
  const input = await people({ csv: SEMICOLON });
  t.is(await codeOf({ ...input, csv: { ...SEMICOLON, delimiter: '\t' } }), 'DATASET_SCHEMA_MISMATCH');
  t.is(await codeOf({ ...input, csv: { ...SEMICOLON, header: false } }), 'DATASET_SCHEMA_MISMATCH');
  // A registration without a dialect means RFC 4180, which this header does not declare.
  const { csv: _csv, ...undeclared } = input;
  t.is(await codeOf(undeclared), 'DATASET_SCHEMA_MISMATCH');
  // The header says semicolon, the registration comma: refused the other way round too.
  t.is(await codeOf(await people({ header: { csv: SEMICOLON } })), 'DATASET_SCHEMA_MISMATCH');
  // RFC 4180 spelled out in a version 2 header is the same as no dialect in the registration.
  t.is(await codeOf(await people({ header: { csv: RFC4180_DIALECT } })), 'materialized');
  t.is(await codeOf(input), 'materialized');
});

test('encrypted inputs: a header naming another table than registered → DATASET_MALFORMED', async (t) => {
  t.is(await codeOf(await people({ header: { table: 'orders' } })), 'DATASET_MALFORMED');
});

test('encrypted inputs: two inputs for one table are refused; an aborted request stops before writing', async (t) => {
  const a = await people();
  const b = await people();
  t.is((await t.throwsAsync(inputs.tableNames(request([a, b])), { instanceOf: CleanroomError })).code, 'DATASET_EXISTS');
  const into = target();
  const controller = new AbortController();
  controller.abort(new Error('gone'));
  await t.throwsAsync(inputs.materialize(request([a], { signal: controller.signal }), ['people'], into), { message: 'gone' });
  t.deepEqual(readdirSync(into.directory), []);
});

test('encrypted inputs: through the executor, a query over a CSV and a Parquet dataset gives the right rows', async (t) => {
  const tiers = await upload({
    table: 'tiers',
    format: 'parquet',
    schema: [
      { name: 'person_id', type: 'INTEGER' },
      { name: 'tier', type: 'VARCHAR' },
    ],
    plaintext: await parquetBytes("SELECT * FROM (VALUES (1::INTEGER, 'gold'), (2::INTEGER, 'silver')) v(person_id, tier)"),
    rowCount: 2,
  });
  const peopleInput = await people();
  const tampered = await people();
  await flipBit(tampered, 300);
  const miscounted = await people({ rowCount: 4 });
  const sink = new TestOnlyPlaintextResultSink({ allowTestOnly: true });
  const executor = createExecutor({ pool: new ExecutorPool({ maxConcurrent: 2, maxQueued: 10 }), inputs, sink, sandbox: detectSandbox(), spares: 1 });
  try {
    const sql = 'SELECT p.name, t.tier FROM people p LEFT JOIN tiers t ON t.person_id = p.id ORDER BY p.id';
    const ok = request([peopleInput, tiers], { sql, queryId: 'q-ok' });
    t.like(await executor.execute(ok), { status: 'SUCCEEDED', result: { rows: 3 } });
    t.deepEqual(sink.read(SESSION, 'q-ok')?.rows, [
      ['Ada, A.', 'gold'],
      ['Bo', 'silver'],
      ['Cy', null],
    ]);
    const expected = [peopleInput, tiers].map((i) => ({ dataset_id: i.dataset_id, ciphertext_sha256: i.ciphertext_sha256 })).sort((x, y) => (x.dataset_id < y.dataset_id ? -1 : 1));
    t.deepEqual(sink.read(SESSION, 'q-ok')?.inputs, expected);
    t.deepEqual(await executor.execute(request([tampered], { sql: 'SELECT * FROM people' })), { status: 'FAILED', code: 'DATASET_HASH_MISMATCH' });
    // Header and registration agree on 4 rows, the file holds 3: the context's own count catches it.
    t.deepEqual(await executor.execute(request([miscounted], { sql: 'SELECT * FROM people' })), { status: 'FAILED', code: 'DATASET_ROW_COUNT_MISMATCH' });
  } finally {
    await executor.close();
  }
});
