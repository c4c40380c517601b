import { createHash, type Hash } from 'node:crypto';
import { rm, type FileHandle } from 'node:fs/promises';
import { sameCsvDialect } from '../../protocol/csv-dialect.ts';
import { unwrapDataKey } from '../../protocol/data-key.ts';
import { objectKeys, type TaskInput } from '../../protocol/dataset.ts';
import type { DatasetHeader } from '../../protocol/dataset-format.ts';
import { CleanroomError } from '../../protocol/errors.ts';
import type { ObjectStore } from '../../runtime/object-store/port.ts';
import { createInputFile } from '../executor/input-files.ts';
import { DecryptThreads } from './decrypt-threads.ts';
import type { ExecuteRequest, FileInput, InputSource, InputTarget } from '../executor/ports.ts';

/** The session private keys the worker holds (`keys/session-keys.ts`). */
export interface SessionPrivateKeys {
  /** The session's private key if its thumbprint is `thumbprint` (SESSION_KEY_UNAVAILABLE otherwise). */
  privateKey(sessionId: string, thumbprint: string): Promise<CryptoKey>;
}

export interface EncryptedInputsOptions {
  objects: ObjectStore;
  sessionKeys: SessionPrivateKeys;
  /** Decryption threads (default 2): hashing and decryption run on two cores, inputs side by side. */
  threads?: number;
}

/**
 * The worker's {@link InputSource}: a query's inputs are the datasets its task names
 * (`request.inputs`), stored as ciphertext in the object store. For each table the checked query
 * names it verifies, in this order, each step with its own code:
 *
 * 1. the object is where the session's dataset lives and exists (DATASET_NOT_FOUND), with the
 *    registered size (DATASET_HASH_MISMATCH);
 * 2. the session key named by the registration is the session's (SESSION_KEY_UNAVAILABLE) and
 *    unwraps the data key, which must be bound to this session and dataset (DATASET_KEY_UNWRAP);
 * 3. one pass over the object: its SHA-256 is computed while it is decrypted into the context
 *    directory (the dataset-format codes: DATASET_WRONG_SESSION, DATASET_CHUNK_TAMPERED, ...);
 *    the registered hash is compared at the end (DATASET_HASH_MISMATCH), and it decides first:
 *    when decryption fails, the rest of the object is still hashed, and a different object is
 *    reported as such rather than as the first symptom decryption met;
 * 4. the authenticated header names the registered owner and table (DATASET_MALFORMED), format,
 *    CSV dialect and schema (DATASET_SCHEMA_MISMATCH) and row count (DATASET_ROW_COUNT_MISMATCH).
 *
 * The context then checks the file itself against the schema and row count. The data key and the
 * plaintext go nowhere else: no log, no error message; the raw key is zeroed after use. A failed
 * table's file is deleted at once (the context's directory goes with the context anyway).
 */
export class EncryptedInputs implements InputSource {
  readonly #objects: ObjectStore;
  readonly #sessionKeys: SessionPrivateKeys;
  readonly #threads: DecryptThreads;

  constructor(options: EncryptedInputsOptions) {
    this.#objects = options.objects;
    this.#sessionKeys = options.sessionKeys;
    this.#threads = new DecryptThreads({ size: options.threads ?? 2 });
  }

  async tableNames(request: ExecuteRequest): Promise<string[]> {
    const names = request.inputs.map((input) => input.table);
    if (new Set(names).size !== names.length) throw new CleanroomError('DATASET_EXISTS', 'two inputs of the task name the same table');
    return names.sort();
  }

  async materialize(request: ExecuteRequest, names: readonly string[], target: InputTarget, ready?: (file: FileInput) => void): Promise<FileInput[]> {
    await this.tableNames(request);
    const inputs = names.map((name) => {
      const input = request.inputs.find((candidate) => candidate.table === name);
      if (input === undefined) throw new TypeError('materialize: a table the task does not name');
      return input;
    });
    // One table at a time, each announced as soon as it is written: the context loads it while
    // the next one is decrypted (decryption runs on a thread while this one reads and hashes).
    const files: FileInput[] = [];
    for (const input of inputs) {
      const file = await this.#materializeOne(request, input, target);
      files.push(file);
      ready?.(file);
    }
    return files;
  }

  async #materializeOne(request: ExecuteRequest, input: TaskInput, target: InputTarget): Promise<FileInput> {
    const { sessionId, signal } = request;
    const key = objectKeys.dataset(sessionId, input.dataset_id);
    if (input.object_key !== key) throw new CleanroomError('DATASET_NOT_FOUND', 'the input is not stored where the session keeps its datasets');
    const info = await this.#objects.stat(key);
    if (info === null) throw new CleanroomError('DATASET_NOT_FOUND', 'the dataset object does not exist');
    if (info.size !== input.ciphertext_bytes) throw hashMismatch();

    const sessionPrivateKey = await this.#sessionKeys.privateKey(sessionId, input.session_key_thumbprint);
    const dataKey = await unwrapDataKey({
      jwe: input.wrapped_key,
      sessionPrivateKey,
      sessionId,
      datasetId: input.dataset_id,
      sessionKeyThumbprint: input.session_key_thumbprint,
    });
    let file: string | undefined;
    let hashed: HashingReader | undefined;
    try {
      signal?.throwIfAborted();
      const source = await this.#objects.read(key);
      if (source === null) throw new CleanroomError('DATASET_NOT_FOUND', 'the dataset object does not exist');
      hashed = new HashingReader(source);
      const created = await createInputFile(target, input.table, input.format);
      file = created.file;
      const header = await decryptInto(this.#threads, dataKey, created.handle, hashed, { session_id: sessionId, dataset_id: input.dataset_id }, input, signal);
      // The dialect is the authenticated header's (checked equal to the registration's above).
      return { name: input.table, file, format: input.format, ...(header.csv ? { csv: { ...header.csv } } : {}), columns: input.schema.map((c) => ({ ...c })), rowCount: header.row_count };
    } catch (error) {
      if (file !== undefined) await rm(file, { force: true });
      await hashed?.cancel();
      throw error;
    } finally {
      dataKey.fill(0);
    }
  }

  /** Stops the decryption threads (the worker's shutdown). */
  async close(): Promise<void> {
    await this.#threads.close();
  }
}

/**
 * Decrypts into `handle` on a decryption thread while this thread hashes the ciphertext on its
 * way there, then checks the object's hash and the authenticated header.
 */
async function decryptInto(
  threads: DecryptThreads,
  key: Uint8Array,
  handle: FileHandle,
  hashed: HashingReader,
  expect: { session_id: string; dataset_id: string },
  input: TaskInput,
  signal: AbortSignal | undefined,
): Promise<DatasetHeader> {
  let header: DatasetHeader;
  try {
    header = await threads.decrypt({ key, expect, fd: handle.fd, source: hashed.stream, ...(signal ? { signal } : {}) });
    checkHeader(header, input);
  } catch (error) {
    signal?.throwIfAborted();
    // The object's hash decides first: a different object is reported as such.
    if ((await hashed.finish(signal)) !== input.ciphertext_sha256) throw hashMismatch();
    throw error;
  } finally {
    await handle.close().catch(() => {});
  }
  if ((await hashed.finish(signal)) !== input.ciphertext_sha256 || hashed.bytes !== input.ciphertext_bytes) throw hashMismatch();
  return header;
}

function hashMismatch(): CleanroomError {
  return new CleanroomError('DATASET_HASH_MISMATCH', 'the dataset object is not the one registered');
}

/** The authenticated header against the registration (step 4 above). */
function checkHeader(header: DatasetHeader, input: TaskInput): void {
  if (header.owner_email !== input.owner_email || header.table !== input.table) {
    throw new CleanroomError('DATASET_MALFORMED', 'the dataset header names another owner or table than registered');
  }
  const sameSchema =
    header.format === input.format &&
    sameCsvDialect(header.csv, input.csv) &&
    header.schema.length === input.schema.length &&
    header.schema.every((column, i) => column.name === input.schema[i]!.name && column.type === input.schema[i]!.type);
  if (!sameSchema) throw new CleanroomError('DATASET_SCHEMA_MISMATCH', 'the dataset header declares another format, CSV dialect or schema than registered');
  if (header.row_count !== input.row_count) throw new CleanroomError('DATASET_ROW_COUNT_MISMATCH', 'the dataset header declares another row count than registered');
}

/**
 * Reads the object once: every chunk is hashed on its way to the decryptor (`stream`). If the
 * decryptor stops early, `finish` hashes what is left, so the object's hash is always complete.
 */
class HashingReader {
  readonly stream: ReadableStream<Uint8Array>;
  bytes = 0;
  readonly #hash: Hash = createHash('sha256');
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  #done = false;

  constructor(source: ReadableStream<Uint8Array>) {
    this.#reader = source.getReader();
    this.stream = new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          const chunk = await this.#next();
          if (chunk === null) controller.close();
          else controller.enqueue(chunk);
        },
        // The decryptor gave up: the source stays open for `finish`.
        cancel: () => {},
      },
      { highWaterMark: 0 },
    );
  }

  async #next(): Promise<Uint8Array | null> {
    if (this.#done) return null;
    const { done, value } = await this.#reader.read();
    if (done) {
      this.#done = true;
      return null;
    }
    this.#hash.update(value);
    this.bytes += value.byteLength;
    return value;
  }

  /** Hashes whatever the decryptor did not read and returns the object's hex SHA-256 (once). */
  async finish(signal: AbortSignal | undefined): Promise<string> {
    while ((await this.#next()) !== null) signal?.throwIfAborted();
    return this.#hash.digest('hex');
  }

  async cancel(): Promise<void> {
    if (!this.#done) await this.#reader.cancel().catch(() => {});
  }
}
