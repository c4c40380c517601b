import { DATASET_LIMITS } from '../../protocol/dataset.ts';
import type { TaskSigner } from '../../protocol/task.ts';
import type { Clock, DatasetStore, ObjectStore, QueryStore, SessionStore, UploadSigner, WorkerClient } from './ports.ts';

/** What the data path use cases need (datasets, session keys, results, shredding); built once by a composition root. */
export interface DataPathDeps {
  /** One adapter serves the three ports: a registration is a transaction over session and dataset. */
  store: SessionStore & QueryStore & DatasetStore;
  objects: ObjectStore;
  uploads: UploadSigner;
  worker: WorkerClient;
  /** The control plane's task signer: it also signs session key requests to the worker. */
  signer: TaskSigner;
  clock: Clock;
  /** Session key request ids (`jti`); UUIDs in production. */
  newId: () => string;
  /** Cap on one dataset's ciphertext in bytes. Default `DATASET_LIMITS.defaultMaxCiphertextBytes`. */
  maxDatasetBytes?: number;
  /**
   * How long after a close the final shredding pass runs. Until then an upload URL issued before
   * the close may still be used, and a session key request signed before it may still reach the
   * worker; the final pass removes what they left. WARNING: shorter than the upload URL lifetime
   * plus the longest upload, late writes survive the close. Default: the URL lifetime plus an hour.
   */
  shredAfterSeconds?: number;
}

/** The deps with every default applied. */
export type ResolvedDataPathDeps = Required<DataPathDeps>;

/** Applies the defaults; a setting that is not a positive whole number is a bug (TypeError). */
export function resolveDataPathDeps(deps: DataPathDeps): ResolvedDataPathDeps {
  return {
    ...deps,
    maxDatasetBytes: positive(deps.maxDatasetBytes ?? DATASET_LIMITS.defaultMaxCiphertextBytes, 'maxDatasetBytes'),
    shredAfterSeconds: positive(deps.shredAfterSeconds ?? DATASET_LIMITS.uploadUrlTtlSeconds + 3600, 'shredAfterSeconds'),
  };
}

function positive(value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new TypeError(`${name} must be a positive integer`);
  return value;
}
