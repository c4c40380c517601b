import { readFileSync, statSync } from 'node:fs';
import { createLocalJWKSet, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';

/**
 * The control plane's public task-signing keys from a JWKS file (locally written by the API at
 * start; in GCP the KMS public key pinned in the VM's configuration). Re-read when the file
 * changes, so the worker may start before the API has published its key.
 */
export function taskKeysFromFile(path: string): JWTVerifyGetKey {
  let loaded: { mtimeMs: number; keys: JWTVerifyGetKey } | undefined;
  return async (header, token) => {
    let mtimeMs: number;
    try {
      mtimeMs = statSync(path).mtimeMs;
    } catch {
      throw new Error('no task-signing keys published yet');
    }
    if (!loaded || loaded.mtimeMs !== mtimeMs) {
      loaded = { mtimeMs, keys: createLocalJWKSet(JSON.parse(readFileSync(path, 'utf8')) as JSONWebKeySet) };
    }
    return loaded.keys(header, token);
  };
}
