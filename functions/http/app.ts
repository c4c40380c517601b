import { CleanroomError } from '../../protocol/errors.ts';
import { traceFields } from '../../runtime/logger.ts';
import type { Principal } from '../core/ports.ts';
import { errorResponse, json } from './responses.ts';
import { createRouter } from './router.ts';
import type { ApiDeps, Route } from './types.ts';

const MAX_TOKEN_LENGTH = 8192;

/**
 * The control plane as one web-standard handler: route, authenticate, dispatch, map errors.
 * Any runtime (node:http locally, the Functions Framework in GCP) adapts to it.
 */
export function createApi(routes: readonly Route[], deps: ApiDeps): (request: Request) => Promise<Response> {
  const match = createRouter(routes);
  return async (request) => {
    const started = performance.now();
    const url = new URL(request.url);
    const found = match(request.method, url.pathname);
    let response: Response;
    let route: string | undefined;
    try {
      if (found.kind === 'not-found') throw new CleanroomError('ROUTE_NOT_FOUND', `no route for ${url.pathname}`);
      if (found.kind === 'method-not-allowed') {
        response = errorResponse(new CleanroomError('METHOD_NOT_ALLOWED', `use ${found.allowed.join(', ')}`), {
          allow: found.allowed.join(', '),
        });
      } else {
        route = found.route.path;
        const params = decodeParams(found.params);
        const principal = await authenticate(found.route.auth, request, deps);
        response = await found.route.handler({ request, url, params, principal, deps });
      }
    } catch (error) {
      response = toErrorResponse(error, deps, request.method, route);
    }
    deps.log.info('request', {
      method: request.method,
      route: route ?? null,
      status: response.status,
      ms: Math.round((performance.now() - started) * 10) / 10,
      ...traceFields(request.headers, deps.traceProject),
    });
    return response;
  };
}

/** The caller a route's auth demands: 401 without a valid token, 403 for the wrong worker. */
async function authenticate(auth: Route['auth'], request: Request, deps: ApiDeps): Promise<Principal> {
  if (auth === 'public') return { email: '', sub: '' };
  const principal = await deps.identity.verify(bearerToken(request));
  if (auth === 'worker' && (deps.workerEmail === undefined || principal.email !== deps.workerEmail.toLowerCase())) {
    // Someone with a valid identity knocking on the internal target: worth a line in the log.
    deps.log.warn('internal route refused', { caller: principal.email, configured: deps.workerEmail !== undefined });
    throw new CleanroomError('FORBIDDEN', 'only the worker may call this');
  }
  return principal;
}

function bearerToken(request: Request): string {
  const header = request.headers.get('authorization') ?? '';
  const m = /^Bearer ([A-Za-z0-9._~+/=-]+)$/.exec(header);
  if (!m || m[1]!.length > MAX_TOKEN_LENGTH) {
    throw new CleanroomError('UNAUTHENTICATED', 'send an ID token as "Authorization: Bearer <token>"');
  }
  return m[1]!;
}

function decodeParams(raw: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw)) {
    try {
      out[k] = decodeURIComponent(v);
    } catch {
      throw new CleanroomError('VALIDATION_FAILED', `${k}: malformed path parameter`);
    }
  }
  return out;
}

function toErrorResponse(error: unknown, deps: ApiDeps, method: string, route: string | undefined): Response {
  if (error instanceof CleanroomError) {
    if (error.code === 'UNAUTHENTICATED') {
      // The cause says which check failed; it goes to the log, never to the caller.
      const cause = error.cause instanceof Error ? `${error.cause.name}: ${error.cause.message}` : undefined;
      deps.log.warn('authentication failed', { method, route: route ?? null, reason: error.message, cause });
      return errorResponse(error, { 'www-authenticate': 'Bearer' });
    }
    if (error.status >= 500) deps.log.error('request failed', { method, route: route ?? null, code: error.code });
    return errorResponse(error);
  }
  // A bug: the caller gets a fixed message, the log gets the stack.
  const detail = error instanceof Error ? { name: error.name, stack: error.stack } : { value: String(error) };
  deps.log.error('unhandled error', { method, route: route ?? null, ...detail });
  return json({ error: { code: 'INTERNAL', message: 'internal error' } }, 500);
}
