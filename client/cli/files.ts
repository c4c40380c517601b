import { chmod, open, rename, rm, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { CliError } from './errors.ts';

/** A regular file's size; a directory or device is refused (FILE_UNSUPPORTED), a missing file is ENOENT. */
export async function regularFileSize(path: string): Promise<number> {
  const info = await stat(path);
  if (!info.isFile()) throw new CliError('FILE_UNSUPPORTED', `${path} is not a regular file`);
  return info.size;
}

const READ_BYTES = 1024 * 1024;

/**
 * The file from its start as a web stream, 1 MiB at a time, read only when the consumer pulls:
 * memory stays bounded whatever the file's size (node's `Readable.toWeb` over a read stream was
 * measured holding more than twice a 300 MB file at once during an upload).
 */
export function openFileStream(path: string): ReadableStream<Uint8Array> {
  let handle: FileHandle | undefined;
  const close = async (): Promise<void> => {
    const open = handle;
    handle = undefined;
    await open?.close().catch(() => {});
  };
  return new ReadableStream<Uint8Array>(
    {
      async start() {
        handle = await open(path, 'r');
      },
      async pull(controller) {
        try {
          const buffer = new Uint8Array(READ_BYTES);
          const { bytesRead } = await handle!.read(buffer, 0, READ_BYTES, null);
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
