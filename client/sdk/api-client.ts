import * as v from 'valibot';
import { CleanroomError } from '../../protocol/errors.ts';
import { SessionIdSchema, type CreateSessionRequest, type SessionStatus, type SessionView } from '../../protocol/session.ts';
import { TransportError } from './errors.ts';
import { SessionPageSchema, SessionViewSchema } from './schemas.ts';
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

/**
 * The sessions API for browsers and Node alike (only `fetch`). Methods throw `CleanroomError`
 * with the API's code when the API refuses, and `TransportError` when no API answer arrived.
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
    const params = new URLSearchParams();
    if (query.status !== undefined) params.set('status', query.status);
    if (query.limit !== undefined) params.set('limit', String(query.limit));
    if (query.cursor !== undefined) params.set('cursor', query.cursor);
    const qs = params.size > 0 ? `?${params}` : '';
    return this.#call('GET', `/api/tee/sessions${qs}`, SessionPageSchema);
  }

  /** Every session of the caller across all pages, newest first, fetched a page at a time. */
  async *iterateSessions(query: Omit<ListSessionsQuery, 'cursor'> = {}): AsyncGenerator<SessionView, void, undefined> {
    let cursor: string | undefined;
    for (;;) {
      const page = await this.listSessions({ ...query, ...(cursor !== undefined ? { cursor } : {}) });
      yield* page.sessions;
      if (page.next_cursor === null) return;
      // A cursor that does not move would loop forever.
      if (page.next_cursor === cursor || page.sessions.length === 0) {
        throw new TransportError('UNEXPECTED_RESPONSE', `${this.#baseUrl}/api/tee/sessions`, 'the API returned a page cursor that does not advance');
      }
      cursor = page.next_cursor;
    }
  }

  /** `GET /api/tee/sessions/:id`; SESSION_NOT_FOUND also when the caller does not take part. */
  async getSession(id: string): Promise<SessionView> {
    return this.#call('GET', sessionPath(id), SessionViewSchema);
  }

  /** `DELETE /api/tee/sessions/:id`: owner only; closing a closed session is a no-op. */
  async closeSession(id: string): Promise<SessionView> {
    return this.#call('DELETE', sessionPath(id), SessionViewSchema);
  }

  async #call<S extends v.GenericSchema>(
    method: 'GET' | 'POST' | 'DELETE',
    path: string,
    schema: S,
    body?: unknown,
  ): Promise<v.InferOutput<S>> {
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
