import { nextAuditEntry } from '../../protocol/audit.ts';
import { DATASET_LIMITS, objectKeys, type CreateUploadRequest, type RegisterDatasetRequest, type UploadTicket } from '../../protocol/dataset.ts';
import { CleanroomError } from '../../protocol/errors.ts';
import { resolveDataPathDeps, type DataPathDeps, type ResolvedDataPathDeps } from './datapath-deps.ts';
import { assertMayUpload, registerDataset } from './dataset-rules.ts';
import type { DatasetRecord, SessionRecord } from './records.ts';
import { relaySessionKey } from './session-key-relay.ts';
import { assertActive, assertParticipant } from './session-rules.ts';
import { reconcileShredding, shredObjects, type ShredReport } from './session-shredder.ts';

export type { DataPathDeps } from './datapath-deps.ts';
export type { ShredReport } from './session-shredder.ts';

/** How often a registration that lost a race is decided again before the caller sees CONFLICT. */
const MAX_ATTEMPTS = 4;

/**
 * The confidential data path's use cases at the control plane (docs/architecture.md §3, flow steps 2, 5
 * and 6): upload URLs and registrations of encrypted datasets, the relay for the worker's session
 * key bundle, sealed results for their recipients, and the crypto-shredding of closed sessions.
 * It never sees plaintext or an unwrapped key. Callers pass verified emails only.
 */
export class DataPathService {
  readonly #deps: ResolvedDataPathDeps;

  constructor(deps: DataPathDeps) {
    this.#deps = resolveDataPathDeps(deps);
  }

  /** The configured cap on one dataset's ciphertext, in bytes. */
  get maxDatasetBytes(): number {
    return this.#deps.maxDatasetBytes;
  }

  /** A create-only upload URL for a new dataset's ciphertext, valid `DATASET_LIMITS.uploadUrlTtlSeconds`. */
  async createUpload(actor: string, sessionId: string, request: CreateUploadRequest): Promise<UploadTicket> {
    const { session, datasets } = await this.#read(actor, sessionId);
    assertMayUpload(session, datasets, actor, request, this.#deps.maxDatasetBytes);
    const key = objectKeys.dataset(sessionId, request.dataset_id);
    const signed = await this.#deps.uploads.signUpload(key, {
      expiresInSeconds: DATASET_LIMITS.uploadUrlTtlSeconds,
      maxBytes: request.ciphertext_bytes,
    });
    return {
      dataset_id: request.dataset_id,
      object_key: key,
      url: signed.url,
      method: signed.method,
      headers: { ...signed.headers },
      expires_at: signed.expiresAt.toISOString(),
      max_bytes: request.ciphertext_bytes,
    };
  }

  /**
   * Registers an uploaded dataset with the caller as owner: one transaction with its audit entry,
   * conditional on the session's version, so the checks over the session's datasets (id, table
   * name, count) still hold when it lands. A lost race is decided again on fresh data.
   */
  async register(actor: string, sessionId: string, request: RegisterDatasetRequest): Promise<DatasetRecord> {
    for (let attempt = 1; ; attempt++) {
      const { session, datasets } = await this.#read(actor, sessionId);
      // The object store is asked outside the transaction; the object is create-only, so what it says stays true.
      const uploaded = await this.#deps.objects.stat(objectKeys.dataset(sessionId, request.dataset_id));
      const now = this.#deps.clock.now().toISOString();
      const { dataset, audit } = registerDataset(session, datasets, actor, request, uploaded, this.#deps.maxDatasetBytes, now);
      const entry = await nextAuditEntry(session.audit_head, { session_id: sessionId, at: now, actor, ...audit });
      try {
        await this.#deps.store.commitDataset({ dataset, expectedSessionVersion: session.version, entry });
        return dataset;
      } catch (error) {
        if (!(error instanceof CleanroomError && error.code === 'CONFLICT') || attempt >= MAX_ATTEMPTS) throw error;
      }
    }
  }

  /** A session's datasets, oldest first, for its participants (closed sessions included). */
  async list(actor: string, sessionId: string): Promise<DatasetRecord[]> {
    return (await this.#read(actor, sessionId)).datasets;
  }

  /** The worker's key bundle for an ACTIVE session, for a participant (see `relaySessionKey`). */
  async sessionKey(actor: string, sessionId: string, nonce: string): Promise<string> {
    const session = await this.#deps.store.get(sessionId);
    assertParticipant(session, actor);
    assertActive(session);
    return relaySessionKey(this.#deps, sessionId, nonce);
  }

  /**
   * A query's sealed result as stored by the worker, for its recipients only: SESSION_NOT_FOUND,
   * QUERY_NOT_FOUND, FORBIDDEN (not a recipient), RESULT_NOT_READY (not SUCCEEDED), then
   * RESULT_NOT_FOUND. Results outlive the session's close: they are sealed to their recipients.
   */
  async result(actor: string, sessionId: string, queryId: string): Promise<Uint8Array> {
    assertParticipant(await this.#deps.store.get(sessionId), actor);
    const query = await this.#deps.store.getQuery(sessionId, queryId);
    if (!query) throw new CleanroomError('QUERY_NOT_FOUND', 'query not found');
    if (!query.recipients.includes(actor))
      throw new CleanroomError('FORBIDDEN', `only the query's recipients (${query.recipients.join(', ')}) may fetch its result: propose it again naming you with --recipient`);
    if (query.status !== 'SUCCEEDED') {
      const ended = ['FAILED', 'REJECTED', 'CANCELLED', 'EXPIRED'].includes(query.status);
      const next = ended ? 'it has no result' : `wait for it: \`cleanroom query show ${sessionId} ${queryId} --wait\``;
      throw new CleanroomError('RESULT_NOT_READY', `the query is ${query.status}: ${next}`);
    }
    const sealed = await this.#deps.objects.read(objectKeys.result(sessionId, queryId));
    if (!sealed) throw new CleanroomError('RESULT_NOT_FOUND', 'the result is not in the object store');
    // Read whole here, so a read that breaks off is an error code, never a truncated 200.
    return readAll(sealed);
  }

  /**
   * The shredding pass at close (best effort: the reconciler's final pass, see
   * `reconcileShredding`, makes it certain). Only for a CLOSED session; returns how many objects went.
   */
  async shredClosed(session: SessionRecord): Promise<number> {
    if (session.status !== 'CLOSED') throw new TypeError('only a closed session is shredded');
    return shredObjects(this.#deps.objects, session.id);
  }

  /** The reconciler's shredding run relative to `now`. */
  reconcile(now: Date = this.#deps.clock.now()): Promise<ShredReport> {
    return reconcileShredding(this.#deps, now);
  }

  async #read(actor: string, sessionId: string): Promise<{ session: SessionRecord; datasets: DatasetRecord[] }> {
    const session = await this.#deps.store.get(sessionId);
    assertParticipant(session, actor);
    const datasets = await this.#deps.store.listDatasets(sessionId, { limit: DATASET_LIMITS.maxDatasetsPerSession });
    return { session, datasets };
  }
}

/** A stream's bytes; a stream that fails midway is an object store outage. */
async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for await (const chunk of stream) {
      chunks.push(chunk);
      size += chunk.byteLength;
    }
  } catch (error) {
    if (error instanceof CleanroomError) throw error;
    throw new CleanroomError('OBJECT_STORE_UNAVAILABLE', 'the result could not be read; retry', { cause: error, retryAfter: 1 });
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}
