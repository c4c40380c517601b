import type { AuditEntry } from '../../protocol/audit.ts';
import { DATASET_LIMITS, objectKeys, type CreateUploadRequest, type DatasetView, type RegisterDatasetRequest } from '../../protocol/dataset.ts';
import { CleanroomError } from '../../protocol/errors.ts';
import type { ObjectInfo } from './ports.ts';
import type { DatasetRecord, SessionRecord } from './records.ts';
import { assertActive } from './session-rules.ts';

/**
 * The dataset rules as pure functions over records (docs/architecture.md invariant 2: the control plane only
 * ever holds what a registration carries, ciphertext metadata and a wrapped key). Callers have
 * checked that the actor takes part in the session.
 */

/**
 * Whether `actor` may upload `request` into the session whose datasets are `datasets`: ACTIVE,
 * the actor has registered keys (FORBIDDEN: a dataset needs an owner who can sign for it), the
 * size is within `maxBytes` (DATASET_TOO_LARGE), the id is new (DATASET_EXISTS) and there is room
 * (VALIDATION_FAILED past `DATASET_LIMITS.maxDatasetsPerSession`).
 */
export function assertMayUpload(session: SessionRecord, datasets: readonly DatasetRecord[], actor: string, request: CreateUploadRequest, maxBytes: number): void {
  assertActive(session);
  if (!session.participants.find((p) => p.email === actor)?.keys) {
    throw new CleanroomError('FORBIDDEN', `register your keys in this session before adding data: run \`cleanroom session join ${session.id}\` (or PUT .../participants/me/keys)`);
  }
  if (request.ciphertext_bytes > maxBytes) {
    throw new CleanroomError('DATASET_TOO_LARGE', `a dataset's ciphertext may be at most ${maxBytes} bytes`);
  }
  if (datasets.some((d) => d.id === request.dataset_id)) throw new CleanroomError('DATASET_EXISTS', 'a dataset with this id is registered');
  if (datasets.length >= DATASET_LIMITS.maxDatasetsPerSession) {
    throw new CleanroomError('VALIDATION_FAILED', `a session has at most ${DATASET_LIMITS.maxDatasetsPerSession} datasets`);
  }
}

/**
 * A registration: everything {@link assertMayUpload} checks, then the table name must be free in
 * the session (TABLE_NAME_TAKEN) and the uploaded object must exist with exactly the declared size
 * (UPLOAD_MISSING: not uploaded, or not what was declared). The owner is the caller.
 */
export function registerDataset(
  session: SessionRecord,
  datasets: readonly DatasetRecord[],
  actor: string,
  request: RegisterDatasetRequest,
  uploaded: ObjectInfo | null,
  maxBytes: number,
  now: string,
): { dataset: DatasetRecord; audit: Pick<AuditEntry, 'action' | 'details'> } {
  assertMayUpload(session, datasets, actor, request, maxBytes);
  if (datasets.some((d) => d.table === request.table)) {
    throw new CleanroomError(
      'TABLE_NAME_TAKEN',
      `the session already has a dataset named ${request.table}: upload it under another table name (\`cleanroom dataset list ${session.id}\` shows the names in use)`,
    );
  }
  if (uploaded === null) throw new CleanroomError('UPLOAD_MISSING', 'upload the ciphertext before registering it');
  if (uploaded.size !== request.ciphertext_bytes) {
    throw new CleanroomError('UPLOAD_MISSING', `the uploaded object has ${uploaded.size} bytes, not the ${request.ciphertext_bytes} declared`);
  }
  const dataset: DatasetRecord = {
    id: request.dataset_id,
    session_id: session.id,
    owner_email: actor,
    table: request.table,
    format: request.format,
    ...(request.csv !== undefined ? { csv: { ...request.csv } } : {}),
    schema: request.schema.map((column) => ({ ...column })),
    row_count: request.row_count,
    ciphertext_bytes: request.ciphertext_bytes,
    ciphertext_sha256: request.ciphertext_sha256,
    wrapped_key: request.wrapped_key,
    session_key_thumbprint: request.session_key_thumbprint,
    object_key: objectKeys.dataset(session.id, request.dataset_id),
    created_at: now,
  };
  return {
    dataset,
    audit: {
      action: 'dataset.registered',
      details: {
        dataset_id: dataset.id,
        table: dataset.table,
        format: dataset.format,
        ciphertext_bytes: dataset.ciphertext_bytes,
        ciphertext_sha256: dataset.ciphertext_sha256,
        session_key_thumbprint: dataset.session_key_thumbprint,
      },
    },
  };
}

/** The API's view of a dataset: metadata only, no wrapped key or object location. */
export function toDatasetView(dataset: DatasetRecord): DatasetView {
  return {
    id: dataset.id,
    session_id: dataset.session_id,
    owner_email: dataset.owner_email,
    table: dataset.table,
    format: dataset.format,
    ...(dataset.csv !== undefined ? { csv: { ...dataset.csv } } : {}),
    schema: dataset.schema.map((column) => ({ ...column })),
    row_count: dataset.row_count,
    ciphertext_bytes: dataset.ciphertext_bytes,
    ciphertext_sha256: dataset.ciphertext_sha256,
    session_key_thumbprint: dataset.session_key_thumbprint,
    created_at: dataset.created_at,
  };
}
