import test from 'ava';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encryptDataset, generateDataKey } from '../../../protocol/dataset-format.ts';
import { CleanroomError } from '../../../protocol/errors.ts';
import { nodeAead } from '../../../runtime/aead-node.ts';
import { DecryptThreads } from '../../../enclave-worker/inputs/decrypt-threads.ts';

/**
 * The decryption threads: plaintext written exactly, the format's codes passed through, a
 * thread reusable after a refused dataset, an abort honoured, more jobs than threads queued.
 */

const SESSION = 'session-threads';
const root = mkdtempSync(join(tmpdir(), 'decrypt-threads-'));
const threads = new DecryptThreads({ size: 1 });
test.after.always(async () => {
  await threads.close();
  rmSync(root, { recursive: true, force: true });
});

async function dataset(plaintext: Uint8Array): Promise<{ key: Uint8Array; datasetId: string; ciphertext: Uint8Array }> {
  const key = generateDataKey();
  const datasetId = randomUUID();
  const stream = encryptDataset({
    header: {
      session_id: SESSION,
      dataset_id: datasetId,
      owner_email: 'o@example.com',
      table: 't',
      format: 'csv',
      schema: [{ name: 'a', type: 'VARCHAR' }],
      row_count: 1,
      plaintext_bytes: plaintext.byteLength,
    },
    key,
    plaintext: new Blob([plaintext as Uint8Array<ArrayBuffer>]).stream(),
    aead: nodeAead,
    chunkBytes: 64 * 1024,
  });
  return { key, datasetId, ciphertext: new Uint8Array(await new Response(stream).arrayBuffer()) };
}

function slices(bytes: Uint8Array, size = 100_000): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream({
    pull(controller) {
      if (offset >= bytes.byteLength) return controller.close();
      controller.enqueue(bytes.slice(offset, offset + size));
      offset += size;
    },
  });
}

async function decryptTo(file: string, job: { key: Uint8Array; datasetId: string; source: ReadableStream<Uint8Array>; signal?: AbortSignal }) {
  const fd = openSync(file, 'w', 0o600);
  try {
    return await threads.decrypt({ key: job.key, expect: { session_id: SESSION, dataset_id: job.datasetId }, fd, source: job.source, ...(job.signal ? { signal: job.signal } : {}) });
  } finally {
    closeSync(fd);
  }
}

async function code(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
    return undefined;
  } catch (error) {
    return error instanceof CleanroomError ? error.code : `not coded: ${String(error)}`;
  }
}

test('decrypt threads: a multi-record dataset is written exactly, and the header comes back', async (t) => {
  const plaintext = randomBytes(1_000_003);
  const { key, datasetId, ciphertext } = await dataset(plaintext);
  const file = join(root, 'whole');
  const header = await decryptTo(file, { key, datasetId, source: slices(ciphertext) });
  t.is(header.dataset_id, datasetId);
  t.true(Buffer.from(readFileSync(file)).equals(plaintext));
});

test('decrypt threads: a tampered record is refused with its code, and the thread then serves the next dataset', async (t) => {
  const plaintext = randomBytes(300_000);
  const good = await dataset(plaintext);
  const tampered = good.ciphertext.slice();
  tampered[tampered.byteLength - 100]! ^= 1;
  t.is(await code(decryptTo(join(root, 'tampered'), { key: good.key, datasetId: good.datasetId, source: slices(tampered) })), 'DATASET_CHUNK_TAMPERED');
  t.is(await code(decryptTo(join(root, 'wrong'), { key: good.key, datasetId: randomUUID(), source: slices(good.ciphertext) })), 'DATASET_WRONG_DATASET');
  const file = join(root, 'after');
  await decryptTo(file, { key: good.key, datasetId: good.datasetId, source: slices(good.ciphertext) });
  t.true(Buffer.from(readFileSync(file)).equals(plaintext));
});

test('decrypt threads: an abort stops the job; later jobs still run', async (t) => {
  const plaintext = randomBytes(500_000);
  const { key, datasetId, ciphertext } = await dataset(plaintext);
  const controller = new AbortController();
  let sent = 0;
  // A source that stalls after two slices, until the abort.
  const stalled = new ReadableStream<Uint8Array>({
    async pull(c) {
      if (sent < 2) c.enqueue(ciphertext.slice(sent * 100_000, ++sent * 100_000));
      else await new Promise((resolve) => setTimeout(resolve, 50));
    },
  });
  const pending = decryptTo(join(root, 'aborted'), { key, datasetId, source: stalled, signal: controller.signal });
  setTimeout(() => controller.abort(), 100);
  t.truthy(await code(pending));
  const file = join(root, 'after-abort');
  await decryptTo(file, { key, datasetId, source: slices(ciphertext) });
  t.true(Buffer.from(readFileSync(file)).equals(plaintext));
});

test('decrypt threads: more jobs than threads wait their turn and all finish', async (t) => {
  const made = await Promise.all(
    [1, 2, 3].map(async (n) => {
      const plaintext = randomBytes(200_000 + n);
      return { n, plaintext, ...(await dataset(plaintext)) };
    }),
  );
  await Promise.all(made.map((job) => decryptTo(join(root, `queued-${job.n}`), { key: job.key, datasetId: job.datasetId, source: slices(job.ciphertext) })));
  for (const job of made) t.true(Buffer.from(readFileSync(join(root, `queued-${job.n}`))).equals(job.plaintext));
});
