import { createReadStream } from 'node:fs';
import { chmod, rename, rm, stat, writeFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { CliError } from './errors.ts';

/** A regular file's size; a directory or device is refused (FILE_UNSUPPORTED), a missing file is ENOENT. */
export async function regularFileSize(path: string): Promise<number> {
  const info = await stat(path);
  if (!info.isFile()) throw new CliError('FILE_UNSUPPORTED', `${path} is not a regular file`);
  return info.size;
}

/** The file from its start as a web stream, 1 MiB at a time. */
export function openFileStream(path: string): ReadableStream<Uint8Array> {
  return Readable.toWeb(createReadStream(path, { highWaterMark: 1024 * 1024 })) as unknown as ReadableStream<Uint8Array>;
}

/**
 * Writes `text` to `path` readable by the user alone (0600): a temporary file next to it, renamed
 * into place, so a reader never sees half of it and an earlier file of that name is replaced.
 */
export async function writePrivateFile(path: string, text: string): Promise<void> {
  const temp = `${path}.${process.pid}.${Date.now()}.tmp`;
  try {
    await writeFile(temp, text, { mode: 0o600, flag: 'wx' });
    await chmod(temp, 0o600);
    await rename(temp, path);
  } finally {
    await rm(temp, { force: true });
  }
}
