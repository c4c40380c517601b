import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { generateUploadSecret } from '../../runtime/object-store/local-upload.ts';

/**
 * The secret the embedded stack signs its upload URLs with: 32 random bytes, base64url in a 0600
 * file of the data directory, created on first start, so URLs stay valid across restarts.
 */
export function loadUploadSecret(path: string): Uint8Array {
  try {
    return decode(readFileSync(path, 'utf8'), path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  try {
    // `wx`: of two stacks starting on one data directory, one creates the file and both read it.
    writeFileSync(path, `${Buffer.from(generateUploadSecret()).toString('base64url')}\n`, { mode: 0o600, flag: 'wx' });
    chmodSync(path, 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  return decode(readFileSync(path, 'utf8'), path);
}

function decode(text: string, path: string): Uint8Array {
  const trimmed = text.trim();
  const bytes = /^[A-Za-z0-9_-]{43,}$/.test(trimmed) ? Buffer.from(trimmed, 'base64url') : Buffer.alloc(0);
  if (bytes.byteLength < 32) throw new Error(`${path} does not hold an upload secret (32 bytes, base64url); delete it to make a new one`);
  return new Uint8Array(bytes);
}
