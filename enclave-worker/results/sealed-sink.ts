import { objectKeys } from '../../protocol/dataset.ts';
import { CleanroomError } from '../../protocol/errors.ts';
import { sealResult } from '../../protocol/sealed-result.ts';
import type { ObjectStore } from '../../runtime/object-store/port.ts';
import type { ExecuteRequest, LoadedInput, QueryResult, ResultRef, ResultSink } from '../executor/ports.ts';
import type { WorkerIdentity } from '../identity.ts';
import type { ReceiptAttestation } from './receipt-attestation.ts';

export interface SealedResultSinkOptions {
  objects: ObjectStore;
  identity: WorkerIdentity;
  /** The receipt attestation (cached; see `receipt-attestation.ts`). */
  attestation: () => Promise<ReceiptAttestation>;
  /** The receipt's time (injected in tests). */
  now?: () => Date;
}

/**
 * The worker's result sink (docs/architecture.md invariants 8, 9, 10): seals each result to the task's
 * recipient keys with a receipt signed by the identity key, and writes it ONCE to
 * `objectKeys.result(session, query)` (`ifGenerationMatch: 0` on Cloud Storage). A second write
 * for the same query (a redelivered task) keeps the first object and answers with its reference
 * and size, so a query's outcome is recorded exactly once however often its task arrives. No
 * plaintext result outlives the call.
 */
export class SealedResultSink implements ResultSink {
  readonly #options: SealedResultSinkOptions;

  constructor(options: SealedResultSinkOptions) {
    this.#options = options;
  }

  async write(request: ExecuteRequest, result: QueryResult, inputs: readonly LoadedInput[]): Promise<ResultRef> {
    if (request.recipients.length === 0) throw new CleanroomError('RECIPIENT_KEY_MISSING', 'the task names no recipient keys');
    const key = objectKeys.result(request.sessionId, request.queryId);
    const { token, imageDigest } = await this.#options.attestation();
    const sealed = await sealResult({
      sessionId: request.sessionId,
      queryId: request.queryId,
      attempt: request.attempt,
      sql: request.sql,
      inputs: inputs.map(({ dataset_id, ciphertext_sha256 }) => ({ dataset_id, ciphertext_sha256 })),
      result: { columns: result.columns, rows: result.rows },
      recipients: [...request.recipients],
      identity: { privateKey: this.#options.identity.privateKey, publicJwk: this.#options.identity.publicJwk },
      attestation: token,
      imageDigest,
      ...(this.#options.now ? { now: this.#options.now() } : {}),
    });
    const bytes = new TextEncoder().encode(JSON.stringify(sealed));
    try {
      await this.#options.objects.createOnly(key, bytes);
      return { ref: `object:${key}`, rows: result.rows.length, bytes: bytes.byteLength };
    } catch (error) {
      if (!(error instanceof CleanroomError && error.code === 'OBJECT_EXISTS')) throw error;
    }
    // A previous delivery sealed this query already: its object stands. Output is deterministic
    // (docs/architecture.md invariant 10), so the row count is this run's; the receipt does not state one.
    const existing = await this.#options.objects.stat(key);
    if (existing === null) throw new CleanroomError('OBJECT_STORE_UNAVAILABLE', 'the result was deleted while it was written', { retryAfter: 1 });
    return { ref: `object:${key}`, rows: result.rows.length, bytes: existing.size };
  }
}
