import * as v from 'valibot';
import type { CreateUploadRequest, RegisterDatasetRequest } from '../../protocol/dataset.ts';
import { CleanroomError } from '../../protocol/errors.ts';
import type { ProposeQueryRequest, QueryStatus } from '../../protocol/query.ts';
import { SessionIdSchema, type CreateSessionRequest, type ParticipantView, type RegisterKeysRequest, type SessionStatus, type SessionView } from '../../protocol/session.ts';
import { TransportError } from './errors.ts';
import {
  AuditPageSchema,
  DatasetListSchema,
  DatasetViewSchema,
  ParticipantViewSchema,
  QueryPageSchema,
  QueryViewSchema,
  SealedResultEnvelopeSchema,
  SessionKeyBundleSchema,
  SessionPageSchema,
  SessionViewSchema,
  UploadTicketSchema,
  type AuditPage,
  type DatasetViewReceived,
  type QueryView,
  type UploadTicketView,
} from './schemas.ts';
import { requestJson, type FetchLike } from './transport.ts';

/** How a {@link CleanroomApi} reaches the API. */
export interface CleanroomApiOptions {
  /** The API's origin, e.g. `http://localhost:3000` (a trailing slash is ignored). */
  baseUrl: string;
  /** A current bearer ID token; called before every request, so it may refresh. */
  token: () => Promise<string>;
  /** Defaults to the global `fetch`. */
  fetch?: FetchLike;
  /** Per request, headers and body together. Default 30 s. */
  timeoutMs?: number;
}

/** `GET /api/tee/sessions` filters. */
export interface ListSessionsQuery {
  status?: SessionStatus;
  /** Page size, 1-200 (the API's default is 50). */
  limit?: number;
  /** `next_cursor` of the previous page. */
  cursor?: string;
}

/** One page of sessions; `next_cursor` is null on the last page. */
export interface SessionPage {
  sessions: SessionView[];
  next_cursor: string | null;
}

/** `GET /api/tee/sessions/:id/queries` filters. */
export interface ListQueriesQuery {
  status?: QueryStatus;
  /** Page size, 1-200 (the API's default is 50). */
  limit?: number;
  /** `next_cursor` of the previous page. */
  cursor?: string;
}

/** One page of a session's queries; `next_cursor` is null on the last page. */
export interface QueryPage {
  queries: QueryView[];
  next_cursor: string | null;
}

/**
 * The sessions and queries API for browsers and Node alike (only `fetch`). Methods throw
 * `CleanroomError` with the API's code when the API refuses, and `TransportError` when no API
 * answer arrived.
 */
export class CleanroomApi {
  readonly #baseUrl: string;
  readonly #token: () => Promise<string>;
  readonly #fetch: FetchLike;
  readonly #timeoutMs: number;

  constructor(options: CleanroomApiOptions) {
    this.#baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.#token = options.token;
    this.#fetch = options.fetch ?? ((input, init) => fetch(input, init));
    this.#timeoutMs = options.timeoutMs ?? 30_000;
  }

  /** `POST /api/tee/sessions`: the caller becomes the owner of a new ACTIVE session. */
  async createSession(input: CreateSessionRequest): Promise<SessionView> {
    return this.#call('POST', '/api/tee/sessions', SessionViewSchema, input);
  }

  /** One page of the caller's sessions, newest first. */
  async listSessions(query: ListSessionsQuery = {}): Promise<SessionPage> {
    return this.#call('GET', `/api/tee/sessions${queryString(query)}`, SessionPageSchema);
  }

  /** Every session of the caller across all pages, newest first, fetched a page at a time. */
  async *iterateSessions(query: Omit<ListSessionsQuery, 'cursor'> = {}): AsyncGenerator<SessionView, void, undefined> {
    yield* this.#walk(
      '/api/tee/sessions',
      (cursor) => this.listSessions({ ...query, ...cursor }),
      (page) => page.sessions,
    );
  }

  /** `GET /api/tee/sessions/:id`; SESSION_NOT_FOUND also when the caller does not take part. */
  async getSession(id: string): Promise<SessionView> {
    return this.#call('GET', sessionPath(id), SessionViewSchema);
  }

  /** `DELETE /api/tee/sessions/:id`: owner only; closing a closed session is a no-op. */
  async closeSession(id: string): Promise<SessionView> {
    return this.#call('DELETE', sessionPath(id), SessionViewSchema);
  }

  /** `POST /api/tee/sessions/:id/participants`: the owner adds a participant while the session is ACTIVE. */
  async addParticipant(sessionId: string, email: string): Promise<SessionView> {
    return this.#call('POST', `${sessionPath(sessionId)}/participants`, SessionViewSchema, { email });
  }

  /** `DELETE /api/tee/sessions/:id/participants/:email`: the owner removes a participant while ACTIVE. */
  async removeParticipant(sessionId: string, email: string): Promise<SessionView> {
    return this.#call('DELETE', `${sessionPath(sessionId)}/participants/${encodeURIComponent(email)}`, SessionViewSchema);
  }

  /**
   * `GET /api/tee/sessions/:id/audit`: one page of the hash-chained audit log after `after_seq`,
   * with the chain's head. UNVERIFIED: check it with `readAuditLog` (`audit-log.ts`).
   */
  async listAudit(sessionId: string, query: { after_seq?: number; limit?: number } = {}): Promise<AuditPage> {
    const params = new URLSearchParams();
    if (query.after_seq !== undefined) params.set('after_seq', String(query.after_seq));
    if (query.limit !== undefined) params.set('limit', String(query.limit));
    return this.#call('GET', `${sessionPath(sessionId)}/audit${params.size > 0 ? `?${params}` : ''}`, AuditPageSchema);
  }

  /**
   * `POST /api/tee/sessions/:id/queries`: a participant proposes SQL; the answer is
   * PENDING_APPROVAL, or QUEUED at once when the proposer is the only approver. Recipients
   * default to the proposer.
   */
  async proposeQuery(sessionId: string, input: ProposeQueryRequest): Promise<QueryView> {
    return this.#call('POST', `${sessionPath(sessionId)}/queries`, QueryViewSchema, input);
  }

  /** One page of a session's queries, newest first. */
  async listQueries(sessionId: string, query: ListQueriesQuery = {}): Promise<QueryPage> {
    const path = `${sessionPath(sessionId)}/queries${queryString(query)}`;
    return this.#call('GET', path, QueryPageSchema);
  }

  /** Every query of a session across all pages, newest first, fetched a page at a time. */
  async *iterateQueries(sessionId: string, query: Omit<ListQueriesQuery, 'cursor'> = {}): AsyncGenerator<QueryView, void, undefined> {
    const path = `${sessionPath(sessionId)}/queries`;
    yield* this.#walk(
      path,
      (cursor) => this.listQueries(sessionId, { ...query, ...cursor }),
      (page) => page.queries,
    );
  }

  /** `GET /api/tee/sessions/:id/queries/:qid`: SESSION_NOT_FOUND, then QUERY_NOT_FOUND. */
  async getQuery(sessionId: string, queryId: string): Promise<QueryView> {
    return this.#call('GET', queryPath(sessionId, queryId), QueryViewSchema);
  }

  /** A required approver approves; the approval that completes the policy answers QUEUED. */
  async approveQuery(sessionId: string, queryId: string): Promise<QueryView> {
    return this.#call('POST', `${queryPath(sessionId, queryId)}/approve`, QueryViewSchema);
  }

  /** A required approver rejects; the query is REJECTED for good. */
  async rejectQuery(sessionId: string, queryId: string): Promise<QueryView> {
    return this.#call('POST', `${queryPath(sessionId, queryId)}/reject`, QueryViewSchema);
  }

  /** The proposer or the session owner cancels a query that has not started. */
  async cancelQuery(sessionId: string, queryId: string): Promise<QueryView> {
    return this.#call('POST', `${queryPath(sessionId, queryId)}/cancel`, QueryViewSchema);
  }

  /**
   * `PUT /api/tee/sessions/:id/participants/me/keys`: registers the caller's public signing and
   * encryption keys with an ID token whose nonce binds them (docs/architecture.md invariant 12). Registering
   * the same keys again is harmless; other keys replace the earlier ones.
   */
  async registerKeys(sessionId: string, input: RegisterKeysRequest): Promise<ParticipantView> {
    return this.#call('PUT', `${sessionPath(sessionId)}/participants/me/keys`, ParticipantViewSchema, input);
  }

  /**
   * `POST /api/tee/sessions/:id/session-key`: the session key bundle for the caller's fresh
   * nonce. UNTRUSTED: verify it with `verifySessionKeyBundle` (or use `fetchSessionKey`).
   */
  async requestSessionKey(sessionId: string, nonce: string): Promise<v.InferOutput<typeof SessionKeyBundleSchema>> {
    return this.#call('POST', `${sessionPath(sessionId)}/session-key`, SessionKeyBundleSchema, { nonce });
  }

  /** `POST /api/tee/sessions/:id/datasets/uploads`: a signed URL to PUT one dataset's ciphertext to. */
  async createUpload(sessionId: string, input: CreateUploadRequest): Promise<UploadTicketView> {
    return this.#call('POST', `${sessionPath(sessionId)}/datasets/uploads`, UploadTicketSchema, input);
  }

  /** `POST /api/tee/sessions/:id/datasets`: registers an uploaded dataset (its object must exist). */
  async registerDataset(sessionId: string, input: RegisterDatasetRequest): Promise<DatasetViewReceived> {
    return this.#call('POST', `${sessionPath(sessionId)}/datasets`, DatasetViewSchema, input);
  }

  /** `GET /api/tee/sessions/:id/datasets`: the session's datasets (metadata only). */
  async listDatasets(sessionId: string): Promise<DatasetViewReceived[]> {
    return (await this.#call('GET', `${sessionPath(sessionId)}/datasets`, DatasetListSchema)).datasets;
  }

  /**
   * `GET /api/tee/sessions/:id/queries/:qid/result`: the sealed result, recipients only.
   * UNTRUSTED and encrypted: open it with `openSealedResult` (or use `getResult`).
   */
  async getSealedResult(sessionId: string, queryId: string): Promise<unknown> {
    return this.#call('GET', `${queryPath(sessionId, queryId)}/result`, SealedResultEnvelopeSchema);
  }

  async *#walk<P extends { next_cursor: string | null }, T>(path: string, fetchPage: (cursor: { cursor?: string }) => Promise<P>, items: (page: P) => T[]): AsyncGenerator<T, void, undefined> {
    let cursor: string | undefined;
    for (;;) {
      const page = await fetchPage(cursor !== undefined ? { cursor } : {});
      const found = items(page);
      yield* found;
      if (page.next_cursor === null) return;
      // A cursor that does not move would loop forever.
      if (page.next_cursor === cursor || found.length === 0) {
        throw new TransportError('UNEXPECTED_RESPONSE', `${this.#baseUrl}${path}`, 'the API returned a page cursor that does not advance');
      }
      cursor = page.next_cursor;
    }
  }

  async #call<S extends v.GenericSchema>(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, schema: S, body?: unknown): Promise<v.InferOutput<S>> {
    return requestJson({
      fetch: this.#fetch,
      baseUrl: this.#baseUrl,
      method,
      path,
      token: await this.#token(),
      ...(body !== undefined ? { body } : {}),
      timeoutMs: this.#timeoutMs,
      schema,
    });
  }
}

/** The session's path; the id is checked here because `..` would otherwise walk the URL. */
function sessionPath(id: string): string {
  if (!v.is(SessionIdSchema, id)) throw new CleanroomError('VALIDATION_FAILED', 'not a valid session id');
  return `/api/tee/sessions/${encodeURIComponent(id)}`;
}

const QueryIdSchema = v.pipe(v.string(), v.uuid());

/** A query's path; its id is a UUID, checked here for the same reason as the session's. */
function queryPath(sessionId: string, queryId: string): string {
  if (!v.is(QueryIdSchema, queryId)) throw new CleanroomError('VALIDATION_FAILED', 'not a valid query id');
  return `${sessionPath(sessionId)}/queries/${encodeURIComponent(queryId)}`;
}

/** `?status=&limit=&cursor=` with the given filters only. */
function queryString(query: { status?: string; limit?: number; cursor?: string }): string {
  const params = new URLSearchParams();
  if (query.status !== undefined) params.set('status', query.status);
  if (query.limit !== undefined) params.set('limit', String(query.limit));
  if (query.cursor !== undefined) params.set('cursor', query.cursor);
  return params.size > 0 ? `?${params}` : '';
}
