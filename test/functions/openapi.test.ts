import test from 'ava';
import document from '../../docs/openapi.json' with { type: 'json' };
import { openapi } from '../../functions/handlers/openapi.ts';
import { environmentsMoved } from '../../functions/handlers/legacy-environments.ts';
import type { HandlerContext, Route } from '../../functions/http/types.ts';
import { ROUTES } from '../../functions/routes.ts';
import { ERROR_STATUS } from '../../protocol/errors.ts';

// The slice of OpenAPI 3.1 these checks read; everything else is left as unknown.
interface Ref {
  $ref: string;
  description?: string;
}
interface Parameter {
  name: string;
  in: string;
  required?: boolean;
}
interface Response {
  description?: string;
  headers?: Record<string, unknown>;
  content?: Record<string, { schema?: unknown }>;
}
interface Operation {
  operationId?: string;
  security?: Array<Record<string, string[]>>;
  parameters?: Array<Parameter | Ref>;
  responses?: Record<string, Response | Ref>;
  'x-local-only'?: boolean;
}
interface Doc {
  openapi: string;
  security?: Array<Record<string, string[]>>;
  paths: Record<string, Record<string, unknown> & { parameters?: Array<Parameter | Ref> }>;
  components?: Record<string, Record<string, unknown>>;
}

const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;
const BEARER = 'bearerAuth';
/** The scheme of `worker` routes: a bearer ID token too, but only the worker's identity passes. */
const WORKER_BEARER = 'workerAuth';
const doc = document as unknown as Doc;

/** `/a/:id/b` → `/a/{id}/b`; a rest parameter `/a/:key*` → `/a/{key}` (documented as taking slashes). */
function toOpenApiPath(path: string): string {
  return path.replace(/:([A-Za-z0-9_]+)\*?/g, '{$1}');
}

function key(method: string, path: string): string {
  return `${method.toUpperCase()} ${path}`;
}

function operations(d: Doc): Array<{ key: string; path: string; method: string; op: Operation }> {
  const out: Array<{ key: string; path: string; method: string; op: Operation }> = [];
  for (const [path, item] of Object.entries(d.paths)) {
    for (const method of HTTP_METHODS) {
      const op = item[method] as Operation | undefined;
      if (op) out.push({ key: key(method, path), path, method, op });
    }
  }
  return out;
}

/** Routes the document lacks, and operations the route table lacks (both sorted). */
function compareRoutes(routes: readonly Route[], d: Doc): { undocumented: string[]; unrouted: string[] } {
  const routed = new Set(routes.map((r) => key(r.method, toOpenApiPath(r.path))));
  const documented = new Set(operations(d).map((o) => o.key));
  return {
    undocumented: [...routed].filter((k) => !documented.has(k)).sort(),
    unrouted: [...documented].filter((k) => !routed.has(k)).sort(),
  };
}

/** Resolves a local `#/components/...` reference; a sibling `description` overrides, as 3.1 allows. */
function resolve<T>(d: Doc, value: T | Ref): T {
  if (!value || typeof value !== 'object' || !('$ref' in value)) return value as T;
  const m = /^#\/components\/([^/]+)\/([^/]+)$/.exec(value.$ref);
  const target = m ? d.components?.[m[1]!]?.[m[2]!] : undefined;
  if (target === undefined) throw new Error(`unresolvable $ref ${value.$ref}`);
  return (value.description === undefined ? target : { ...(target as object), description: value.description }) as T;
}

/**
 * Operations whose security does not match their route's auth (user: bearer; worker: the worker's
 * bearer; public: explicitly none).
 */
function securityProblems(routes: readonly Route[], d: Doc): string[] {
  const byKey = new Map(operations(d).map((o) => [o.key, o.op]));
  const problems: string[] = [];
  for (const route of routes) {
    const k = key(route.method, toOpenApiPath(route.path));
    const op = byKey.get(k);
    if (!op) continue;
    if (route.auth === 'user' || route.auth === 'worker') {
      const scheme = route.auth === 'user' ? BEARER : WORKER_BEARER;
      const effective = op.security ?? d.security ?? [];
      // Every alternative must demand the token: an empty alternative would make it optional.
      if (effective.length === 0 || !effective.every((req) => Object.hasOwn(req, scheme))) problems.push(`${k}: needs ${route.auth === 'user' ? 'bearer' : 'worker bearer'}`);
    } else if (!Array.isArray(op.security) || op.security.length !== 0) {
      problems.push(`${k}: public route without security: []`);
    }
    if ((route.localOnly ?? false) !== (op['x-local-only'] ?? false)) problems.push(`${k}: x-local-only differs`);
  }
  return problems;
}

/** Path parameters not in their path, and path template names with no required path parameter. */
function pathParameterProblems(d: Doc): string[] {
  const problems: string[] = [];
  for (const { key: k, path, op } of operations(d)) {
    const inPath = new Set([...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]!));
    const item = d.paths[path]!;
    const params = [...(item.parameters ?? []), ...(op.parameters ?? [])].map((p) => resolve<Parameter>(d, p));
    const declared = new Set<string>();
    for (const p of params.filter((p) => p.in === 'path')) {
      if (!inPath.has(p.name)) problems.push(`${k}: path parameter ${p.name} is not in the path`);
      if (p.required !== true) problems.push(`${k}: path parameter ${p.name} must be required`);
      declared.add(p.name);
    }
    for (const name of inPath) if (!declared.has(name)) problems.push(`${k}: {${name}} is not declared`);
  }
  return problems;
}

function errorCodeEnum(d: Doc): string[] {
  const error = d.components?.schemas?.Error as { properties?: { error?: { properties?: { code?: { enum?: string[] } } } } } | undefined;
  return error?.properties?.error?.properties?.code?.enum ?? [];
}

/**
 * Error responses that do not use the envelope, or whose description names (as `CODE`) a code
 * that is unknown or maps to another status.
 */
function errorResponseProblems(d: Doc): string[] {
  const problems: string[] = [];
  for (const { key: k, op } of operations(d)) {
    for (const [status, raw] of Object.entries(op.responses ?? {})) {
      if (Number(status) < 400) continue;
      const response = resolve<Response>(d, raw);
      const schema = response.content?.['application/json']?.schema as Ref | undefined;
      if (schema?.$ref !== '#/components/schemas/Error') problems.push(`${k} ${status}: not the error envelope`);
      for (const [, code] of (response.description ?? '').matchAll(/`([A-Z][A-Z_]+)`/g)) {
        const expected = (ERROR_STATUS as Record<string, number>)[code!];
        if (expected !== Number(status)) problems.push(`${k} ${status}: ${code} is ${expected ?? 'not a code'}`);
      }
    }
  }
  return problems;
}

/** Every `$ref` anywhere in the document that points at nothing. */
function danglingRefs(d: Doc): string[] {
  const out: string[] = [];
  const walk = (value: unknown): void => {
    if (Array.isArray(value)) return value.forEach(walk);
    if (!value || typeof value !== 'object') return;
    for (const [k, v] of Object.entries(value)) {
      if (k === '$ref' && typeof v === 'string') {
        try {
          resolve(d, { $ref: v });
        } catch {
          out.push(v);
        }
      } else walk(v);
    }
  };
  walk(d);
  return out;
}

function mutated(change: (d: Doc) => void): Doc {
  const copy = structuredClone(doc);
  change(copy);
  return copy;
}

test('openapi: the document is OpenAPI 3.1 and its $refs all resolve', (t) => {
  t.regex(doc.openapi, /^3\.1\./);
  t.deepEqual(danglingRefs(doc), []);
  t.true(danglingRefs(mutated((d) => delete d.components!.schemas!.Error)).includes('#/components/schemas/Error'));
});

test('openapi: every route is documented and every documented operation is routed', (t) => {
  t.deepEqual(compareRoutes(ROUTES, doc), { undocumented: [], unrouted: [] });
  t.is(operations(doc).length, ROUTES.length);
});

test('openapi: the comparison catches a missing route, an extra operation and a wrong method', (t) => {
  const missing = mutated((d) => delete d.paths['/api/tee/sessions/{id}/audit']);
  t.deepEqual(compareRoutes(ROUTES, missing), { undocumented: ['GET /api/tee/sessions/{id}/audit'], unrouted: [] });

  const extra = mutated((d) => (d.paths['/api/tee/sessions/{id}']!.patch = { responses: {} }));
  t.deepEqual(compareRoutes(ROUTES, extra), { undocumented: [], unrouted: ['PATCH /api/tee/sessions/{id}'] });

  const moved = mutated((d) => {
    const item = d.paths['/api/tee/sessions/{id}/participants/me/keys']!;
    item.post = item.put;
    delete item.put;
  });
  t.deepEqual(compareRoutes(ROUTES, moved), {
    undocumented: ['PUT /api/tee/sessions/{id}/participants/me/keys'],
    unrouted: ['POST /api/tee/sessions/{id}/participants/me/keys'],
  });
  t.is(toOpenApiPath('/a/:id/b/:email'), '/a/{id}/b/{email}');
  t.is(toOpenApiPath('/objects/:key*'), '/objects/{key}');
});

test('openapi: user routes need the bearer token, public routes say security: [], local-only routes are marked', (t) => {
  t.deepEqual(securityProblems(ROUTES, doc), []);
  const scheme = doc.components?.securitySchemes?.[BEARER];
  t.like(scheme, { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' });
  t.true(ROUTES.some((r) => r.auth === 'user') && ROUTES.some((r) => r.auth === 'public') && ROUTES.some((r) => r.localOnly));
  t.true(ROUTES.some((r) => r.auth === 'worker'));
  t.like(doc.components?.securitySchemes?.[WORKER_BEARER], { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' });
});

test('openapi: the security check catches an optional token, a public route without security: [] and a lost x-local-only', (t) => {
  const optional = mutated((d) => ((d.paths['/api/tee/sessions']!.post as Operation).security = [{ [BEARER]: [] }, {}]));
  t.deepEqual(securityProblems(ROUTES, optional), ['POST /api/tee/sessions: needs bearer']);
  const open = mutated((d) => ((d.paths['/api/tee/sessions/{id}']!.get as Operation).security = []));
  t.deepEqual(securityProblems(ROUTES, open), ['GET /api/tee/sessions/{id}: needs bearer']);
  const inherited = mutated((d) => delete (d.paths['/api/tee/health']!.get as Operation).security);
  t.deepEqual(securityProblems(ROUTES, inherited), ['GET /api/tee/health: public route without security: []']);
  const unmarked = mutated((d) => delete (d.paths['/dev-idp/token']!.post as Operation)['x-local-only']);
  t.deepEqual(securityProblems(ROUTES, unmarked), ['POST /dev-idp/token: x-local-only differs']);
  const userOnWorker = mutated((d) => ((d.paths['/internal/v1/reconcile']!.post as Operation).security = [{ [BEARER]: [] }]));
  t.deepEqual(securityProblems(ROUTES, userOnWorker), ['POST /internal/v1/reconcile: needs worker bearer']);
});

test('openapi: the error codes enumerated are exactly those of ERROR_STATUS', (t) => {
  t.deepEqual([...errorCodeEnum(doc)].sort(), Object.keys(ERROR_STATUS).sort());
  const short = mutated((d) => errorCodeEnum(d).pop());
  t.notDeepEqual([...errorCodeEnum(short)].sort(), Object.keys(ERROR_STATUS).sort());
});

test('openapi: error responses use the envelope and name only codes of their status', (t) => {
  t.deepEqual(errorResponseProblems(doc), []);
  const wrong = mutated((d) => {
    const op = d.paths['/api/tee/sessions/{id}']!.get as Operation;
    op.responses!['404'] = { $ref: '#/components/responses/NotFound', description: '`SESSION_CLOSED`' };
  });
  t.deepEqual(errorResponseProblems(wrong), ['GET /api/tee/sessions/{id} 404: SESSION_CLOSED is 409']);
});

test('openapi: each path parameter exists in its path, and each {name} in a path is declared', (t) => {
  t.deepEqual(pathParameterProblems(doc), []);
  const bogus = mutated((d) => {
    const op = d.paths['/api/tee/sessions']!.get as Operation;
    op.parameters = [...(op.parameters ?? []), { name: 'id', in: 'path', required: true }];
  });
  t.deepEqual(pathParameterProblems(bogus), ['GET /api/tee/sessions: path parameter id is not in the path']);
  const undeclared = mutated((d) => ((d.paths['/api/tee/sessions/{id}']!.delete as Operation).parameters = []));
  t.deepEqual(pathParameterProblems(undeclared), ['DELETE /api/tee/sessions/{id}: {id} is not declared']);
});

test('openapi: the legacy routes are documented as 410 ENDPOINT_MOVED with Deprecation and Link headers', (t) => {
  const legacy = ROUTES.filter((r) => r.handler === environmentsMoved);
  t.true(legacy.length > 0);
  const byKey = new Map(operations(doc).map((o) => [o.key, o.op]));
  for (const route of legacy) {
    const k = key(route.method, toOpenApiPath(route.path));
    const gone = resolve<Response>(doc, byKey.get(k)!.responses!['410']!);
    t.truthy(gone, k);
    t.deepEqual(Object.keys(gone.headers ?? {}).sort(), ['Deprecation', 'Link'], k);
  }
});

test('openapi: operation ids are unique', (t) => {
  const ids = operations(doc).map((o) => o.op.operationId);
  t.false(ids.includes(undefined));
  t.is(new Set(ids).size, ids.length);
});

test('openapi: GET /api/tee/openapi.json serves this document', async (t) => {
  const res = await openapi({} as HandlerContext);
  t.is(res.status, 200);
  t.deepEqual(await res.json(), document);
});
