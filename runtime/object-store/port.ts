/**
 * The object store port (docs/architecture.md §4): Cloud Storage in GCP, a directory on disk in the
 * embedded stack. It holds ciphertext only: dataset streams, wrapped session keys, sealed results.
 * Keys are `objectKeys` paths (`protocol/dataset.ts`): `[A-Za-z0-9_./-]`, no `..`, no leading `/`.
 *
 * Adapters translate their SDK's failures into `CleanroomError`: `OBJECT_EXISTS` when a
 * create-only write finds the object (Storage's 412 on `ifGenerationMatch: 0`),
 * `DATASET_TOO_LARGE` past `maxBytes`, `OBJECT_STORE_UNAVAILABLE` (with `retryAfter`) for an outage.
 */
export interface ObjectInfo {
  key: string;
  size: number;
  /** Storage's generation; locally the file's inode and modification time. Changes on every write. */
  generation: string;
}

export interface ObjectStore {
  /**
   * Writes the object only if it does not exist (`ifGenerationMatch: 0`), streaming the body.
   * Over `maxBytes` the write is abandoned, nothing is left behind, and `DATASET_TOO_LARGE` is thrown.
   */
  createOnly(key: string, body: ReadableStream<Uint8Array> | Uint8Array, options?: { maxBytes?: number }): Promise<ObjectInfo>;
  /** The object's bytes as a stream, or null when it does not exist. */
  read(key: string): Promise<ReadableStream<Uint8Array> | null>;
  /** Size and generation, or null when it does not exist. */
  stat(key: string): Promise<ObjectInfo | null>;
  /**
   * Deletes every object whose key starts with `prefix` (which must end in `/`); returns how many.
   * Objects are never versioned, so a deleted object is gone (crypto-shredding, invariant 3).
   */
  deletePrefix(prefix: string): Promise<number>;
  /**
   * Every object whose key starts with `prefix` (which must end in `/`), nested ones included,
   * sorted by key. Not a snapshot: objects written or deleted meanwhile may or may not appear.
   */
  list(prefix: string): Promise<ObjectInfo[]>;
  /** Deletes one object; false when it did not exist. Never versioned, like `deletePrefix`. */
  delete(key: string): Promise<boolean>;
}

/** An upload URL the client sends ciphertext to without going through the API (docs/architecture.md §3). */
export interface SignedUpload {
  url: string;
  method: 'PUT';
  /** Headers the client must send exactly (they are part of the signature). */
  headers: Record<string, string>;
  expiresAt: Date;
}

/**
 * Signs create-only upload URLs: a V4 signed URL with `x-goog-if-generation-match: 0` on Cloud
 * Storage, an HMAC-signed URL to the API's `/objects/` route locally. `maxBytes` is enforced by
 * the local route while streaming; on Cloud Storage the registration checks the stored size.
 * `expiresInSeconds` is 1 to 604800 (Cloud Storage's 7-day limit); `TypeError` otherwise.
 */
export interface UploadSigner {
  signUpload(key: string, options: { expiresInSeconds: number; maxBytes: number }): Promise<SignedUpload>;
}

/** A key the adapters accept: the layout of `objectKeys`, nothing that could leave the root. */
export const OBJECT_KEY = /^(?!.*\.\.)(?!\/)[A-Za-z0-9_./-]{1,512}$/;
