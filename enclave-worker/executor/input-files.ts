import { chmodSync, closeSync, existsSync, fchownSync, mkdtempSync, openSync, statfsSync, writeSync } from 'node:fs';
import { open, readdir, rm, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as v from 'valibot';
import { TableNameSchema, type DatasetFormat } from '../../protocol/dataset.ts';
import type { InputTarget } from './ports.ts';

/**
 * The per-context input directories, on the worker's side. Plaintext inputs live only in memory:
 * a directory on tmpfs (`/dev/shm`), one per context, created when the context starts (mode 0711,
 * owned by the worker: a context's own uid can open a file whose name it is told, but cannot list
 * the directory or create anything in it) and removed with everything in it when the context ends.
 */

const SHM = '/dev/shm';
const TMPFS_MAGIC = 0x01021994;

/** Where context directories are created, and whether that is memory (tmpfs) or may reach a disk. */
export interface InputDirectoryRoot {
  path: string;
  /** False means plaintext inputs may be written to disk: reported in the worker's /status. */
  tmpfs: boolean;
}

/** `/dev/shm`, or ⚠ the OS temp directory when the host has none (it may be on disk). */
export function inputDirectoryRoot(): InputDirectoryRoot {
  const path = existsSync(SHM) ? SHM : tmpdir();
  let tmpfs = false;
  try {
    tmpfs = statfsSync(path).type === TMPFS_MAGIC;
  } catch {
    // Unknown file system: reported as not tmpfs.
  }
  return { path, tmpfs };
}

const PREFIX = 'cleanroom-ctx-';
const OWNED = /^cleanroom-ctx-(\d+)-/;

/**
 * A fresh context directory under `root` (absolute, no trailing slash), mode 0711. Its name carries
 * the worker's pid, so a later worker can tell the directories of one that died (see below).
 */
export function createContextDirectory(root: string): string {
  const directory = mkdtempSync(join(root, `${PREFIX}${process.pid}-`));
  chmodSync(directory, 0o711);
  return directory;
}

/**
 * Removes the context directories left under `root` by workers that are no longer running (a
 * worker killed outright cannot clean up after itself); returns how many. Directories of live
 * processes, this one's included, are left alone.
 */
export async function removeStaleContextDirectories(root: string): Promise<number> {
  let removed = 0;
  for (const name of await readdir(root).catch(() => [])) {
    const pid = Number(OWNED.exec(name)?.[1]);
    if (!Number.isSafeInteger(pid) || pid === process.pid || isRunning(pid)) continue;
    await removeContextDirectory(join(root, name)).catch(() => {});
    removed++;
  }
  return removed;
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, under another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes a context directory and everything in it (idempotent). */
export async function removeContextDirectory(directory: string): Promise<void> {
  await rm(directory, { recursive: true, force: true, maxRetries: 3 });
}

function ownedByContext(target: InputTarget): number | undefined {
  return target.uid !== undefined && process.getuid?.() === 0 ? target.uid : undefined;
}

/**
 * Creates `<directory>/<name>.<format>` for writing: exclusive (never an existing file or a link),
 * mode 0400, owned by the context's uid when it has one and the worker is root. The caller writes
 * through the handle and closes it. `name` must be a table name (`TypeError` otherwise).
 */
export async function createInputFile(target: InputTarget, name: string, format: DatasetFormat): Promise<{ file: string; handle: FileHandle }> {
  if (!v.is(TableNameSchema, name) || (format !== 'csv' && format !== 'parquet')) throw new TypeError('an input file is named by its table and format');
  const file = join(target.directory, `${name}.${format}`);
  const handle = await open(file, 'wx', 0o400);
  try {
    const uid = ownedByContext(target);
    if (uid !== undefined) await handle.chown(uid, uid);
  } catch (error) {
    await handle.close();
    await rm(file, { force: true });
    throw error;
  }
  return { file, handle };
}

/** Synchronous twin of {@link createInputFile} for the few bytes written when a context starts. */
export function writeInputFileSync(target: InputTarget, fileName: string, data: Uint8Array | string): string {
  const file = join(target.directory, fileName);
  const fd = openSync(file, 'wx', 0o400);
  try {
    const uid = ownedByContext(target);
    if (uid !== undefined) fchownSync(fd, uid, uid);
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
  } finally {
    closeSync(fd);
  }
  return file;
}
