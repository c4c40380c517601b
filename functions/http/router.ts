import type { Method, Route } from './types.ts';

interface CompiledRoute {
  route: Route;
  pattern: RegExp;
  names: string[];
}

export type Match = { kind: 'found'; route: Route; params: Record<string, string> } | { kind: 'method-not-allowed'; allowed: Method[] } | { kind: 'not-found' };

/**
 * Matches `/a/:id/b` patterns; a parameter is one non-empty path segment. A last segment
 * `:name*` is a rest parameter: one or more segments, slashes included (`/objects/:key*`).
 */
export function createRouter(routes: readonly Route[]): (method: string, path: string) => Match {
  const compiled: CompiledRoute[] = routes.map((route) => {
    const names: string[] = [];
    const segments = route.path.split('/');
    const source = segments
      .map((segment, i) => {
        if (!segment.startsWith(':')) return segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
        const rest = /^:([A-Za-z0-9_]+)\*$/.exec(segment);
        if (rest) {
          if (i !== segments.length - 1) throw new TypeError(`${route.path}: a rest parameter must be the last segment`);
          names.push(rest[1]!);
          // No empty segment anywhere in it: `/objects//x` is not a key.
          return '([^/]+(?:/[^/]+)*)';
        }
        names.push(segment.slice(1));
        return '([^/]+)';
      })
      .join('/');
    return { route, pattern: new RegExp(`^${source}/?$`), names };
  });
  return (method, path) => {
    const allowed: Method[] = [];
    for (const { route, pattern, names } of compiled) {
      const m = pattern.exec(path);
      if (!m) continue;
      if (route.method !== method) {
        allowed.push(route.method);
        continue;
      }
      const params: Record<string, string> = {};
      names.forEach((name, i) => (params[name] = m[i + 1]!));
      return { kind: 'found', route, params };
    }
    return allowed.length > 0 ? { kind: 'method-not-allowed', allowed } : { kind: 'not-found' };
  };
}
