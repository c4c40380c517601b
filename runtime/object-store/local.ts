import { randomUUID } from 'node:crypto';
import { link, mkdir, open, readdir, rmdir, stat, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { CleanroomError } from '../../protocol/errors.ts';
import { OBJECT_KEY, type ObjectInfo, type ObjectStore } from './port.ts';

/** Temporary files of writes in progress: hidden, never a valid local key segment. */
const TEMP_PREFIX = '.tmp-';

/**
 * The embedded stack's object store: one file per object under `rootDir` (files 0600,
 * directories 0700). A create-only write streams into a temporary file in the object's directory
 * and then `link`s it into place, which fails if the name exists: of two racing writers exactly one
 * wins, and a reader never sees a partial object. The GCP twin is `GcsObjectStore`.
 *
 * Keys are checked against `OBJECT_KEY` and, because they become paths, must also have no empty,
 * `.` or dot-prefixed segment (`TypeError` otherwise: callers build keys from validated ids).
 */
export class LocalObjectStore implements ObjectStore {
  readonly #root: string;

  constructor(rootDir: string) {
    if (typeof rootDir !== 'string' || rootDir.length === 0) throw new TypeError('rootDir must be a directory path');
    this.#root = rootDir;
  }

  async createOnly(key: string, body: ReadableStream<Uint8Array> | Uint8Array, options: { maxBytes?: number } = {}): Promise<ObjectInfo> {
    const path = this.#path(key);
    const maxBytes = options.maxBytes ?? Number.MAX_SAFE_INTEGER;
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) throw new TypeError('maxBytes must be a non-negative integer');
    if (body instanceof Uint8Array && body.byteLength > maxBytes) throw tooLarge(maxBytes);
    // Creates the root too, each new directory 0700.
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    const temp = join(dirname(path), `${TEMP_PREFIX}${randomUUID()}`);
    const handle = await open(temp, 'wx', 0o600);
    try {
      try {
        await writeBody(handle, body, maxBytes);
        // The object must be durable before anyone can see it (a sealed result is written once).
        await handle.sync();
      } finally {
        await handle.close();
      }
      try {
        await link(temp, path);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'EEXIST') throw new CleanroomError('OBJECT_EXISTS', 'the object already exists');
        if (isMissing(error)) throw deletedMeanwhile();
        throw error;
      }
    } finally {
      await unlink(temp).catch(() => {});
    }
    const info = await this.stat(key);
    // Only a deletePrefix racing this write removes the object (or its temporary file) meanwhile.
    if (info === null) throw deletedMeanwhile();
    return info;
  }

  async read(key: string): Promise<ReadableStream<Uint8Array> | null> {
    const path = this.#path(key);
    let handle: FileHandle;
    try {
      // Opened before the stream exists, so a missing object is null here, and a delete after
      // this point does not cut the stream short (the open file outlives its name).
      handle = await open(path, 'r');
      if (!(await handle.stat()).isFile()) {
        await handle.close();
        return null;
      }
    } catch (error) {
      if (isMissing(error)) return null;
      throw error;
    }
    return fileStream(handle);
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    const path = this.#path(key);
    try {
      const s = await stat(path, { bigint: true });
      if (!s.isFile()) return null;
      // A file is never rewritten in place (create-only, or deleted and created anew), and a new
      // file gets a new inode or at least a new modification time.
      return { key, size: Number(s.size), generation: `${s.ino}.${s.mtimeNs}` };
    } catch (error) {
      if (isMissing(error)) return null;
      throw error;
    }
  }

  async deletePrefix(prefix: string): Promise<number> {
    if (typeof prefix !== 'string' || !prefix.endsWith('/')) throw new TypeError('a prefix must end with /');
    // Keys are path segments, so "every key starting with prefix/" is exactly the directory's tree.
    return removeTree(this.#path(prefix.slice(0, -1)));
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    if (typeof prefix !== 'string' || !prefix.endsWith('/')) throw new TypeError('a prefix must end with /');
    const dir = prefix.slice(0, -1);
    this.#path(dir);
    const infos: ObjectInfo[] = [];
    for (const key of await objectKeysUnder(this.#root, dir)) {
      // Deleted since the directory was read: not listed.
      const info = await this.stat(key);
      if (info !== null) infos.push(info);
    }
    return infos.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async delete(key: string): Promise<boolean> {
    const path = this.#path(key);
    try {
      // Emptied directories stay: removing them could race a createOnly that just made them.
      await unlink(path);
      return true;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (isMissing(error)) return false;
      // A directory is not an object (EISDIR on Linux, EPERM on macOS); a refused file is a failure.
      if ((code === 'EISDIR' || code === 'EPERM') && (await this.stat(key)) === null) return false;
      throw error;
    }
  }

  #path(key: string): string {
    assertLocalKey(key);
    return join(this.#root, ...key.split('/'));
  }
}

function assertLocalKey(key: string): void {
  if (typeof key !== 'string' || !OBJECT_KEY.test(key)) throw new TypeError('not a valid object key');
  for (const segment of key.split('/')) {
    if (segment === '' || segment.startsWith('.')) throw new TypeError('object key segments may not be empty or start with "."');
  }
}

async function writeBody(handle: FileHandle, body: ReadableStream<Uint8Array> | Uint8Array, maxBytes: number): Promise<void> {
  if (body instanceof Uint8Array) {
    await writeAll(handle, body);
    return;
  }
  const reader = body.getReader();
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      size += value.byteLength;
      if (size > maxBytes) throw tooLarge(maxBytes);
      await writeAll(handle, value);
    }
  } catch (error) {
    // Tell the source to stop (an upload's sender, a producer) instead of leaving it paused.
    await reader.cancel(error).catch(() => {});
    throw error;
  } finally {
    reader.releaseLock();
  }
}

async function writeAll(handle: FileHandle, bytes: Uint8Array): Promise<void> {
  for (let offset = 0; offset < bytes.byteLength; ) {
    offset += (await handle.write(bytes, offset, bytes.byteLength - offset)).bytesWritten;
  }
}

/** The keys of the object files under `dir` (a key), at any depth; temporary and hidden files are not objects. */
async function objectKeysUnder(root: string, dir: string): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(join(root, ...dir.split('/')), { withFileTypes: true });
  } catch (error) {
    if (isMissing(error)) return [];
    throw error;
  }
  const keys: string[] = [];
  for (const entry of entries) {
    if (entry.name.startsWith('.')) continue;
    const key = `${dir}/${entry.name}`;
    // A file no key could name (put there by hand) is not an object of this store.
    if (!OBJECT_KEY.test(key)) continue;
    if (entry.isDirectory()) keys.push(...(await objectKeysUnder(root, key)));
    else if (entry.isFile()) keys.push(key);
  }
  return keys;
}

/** Unlinks every object file under `dir` (counted), then the directories that are left empty. */
async function removeTree(dir: string): Promise<number> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (error) {
    if (isMissing(error)) return 0;
    throw error;
  }
  let removed = 0;
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      removed += await removeTree(path);
      continue;
    }
    try {
      await unlink(path);
      // A temporary file is a write in progress, not an object; removing it makes that write fail.
      if (!entry.name.startsWith(TEMP_PREFIX)) removed++;
    } catch (error) {
      if (!isMissing(error)) throw error;
    }
  }
  try {
    await rmdir(dir);
  } catch (error) {
    // A writer may have created a file here meanwhile: the directory stays, the file was not in the prefix's past.
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST' && !isMissing(error)) throw error;
  }
  return removed;
}

function isMissing(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

function deletedMeanwhile(): CleanroomError {
  return new CleanroomError('OBJECT_STORE_UNAVAILABLE', 'the object was deleted while it was written', { retryAfter: 1 });
}

function tooLarge(maxBytes: number): CleanroomError {
  return new CleanroomError('DATASET_TOO_LARGE', `the object is larger than ${maxBytes} bytes`);
}

/** Bytes per read: records are 1 MiB by default, and each consumer (hash, decrypt) pays per call. */
const READ_BYTES = 1024 * 1024;

/**
 * The file as a web stream read straight from the handle (node's stream adapters cost several
 * times the read itself at these sizes); the handle is closed at the end or on cancel.
 */
function fileStream(handle: FileHandle): ReadableStream<Uint8Array> {
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await handle.close().catch(() => {});
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const buffer = new Uint8Array(READ_BYTES);
          const { bytesRead } = await handle.read(buffer, 0, READ_BYTES, null);
          if (bytesRead === 0) {
            await close();
            controller.close();
          } else controller.enqueue(bytesRead === READ_BYTES ? buffer : buffer.subarray(0, bytesRead));
        } catch (error) {
          await close();
          controller.error(error);
        }
      },
      cancel: close,
    },
    { highWaterMark: 0 },
  );
}
