import test from 'ava';
import { createRouter } from '../../../functions/http/router.ts';
import type { Handler, Route } from '../../../functions/http/types.ts';

const handler: Handler = async () => new Response(null);
const route = (method: Route['method'], path: string): Route => ({ method, path, auth: 'public', summary: path, handler });

test('router: a rest parameter takes one or more whole segments, slashes included', (t) => {
  const match = createRouter([route('PUT', '/objects/:key*'), route('GET', '/a/:id/b')]);
  const found = (path: string, method = 'PUT') => {
    const m = match(method, path);
    return m.kind === 'found' ? m.params : m.kind;
  };
  t.deepEqual(found('/objects/datasets/s1/d1.crds'), { key: 'datasets/s1/d1.crds' });
  t.deepEqual(found('/objects/one'), { key: 'one' });
  t.deepEqual(found('/objects/a%2Fb/c'), { key: 'a%2Fb/c' });
  // Not an empty key, not an empty segment inside it.
  t.is(found('/objects/'), 'not-found');
  t.is(found('/objects'), 'not-found');
  t.is(found('/objects//x'), 'not-found');
  t.is(found('/objects/a//b'), 'not-found');
  t.is(found('/objectsx/a'), 'not-found');
  t.deepEqual(match('GET', '/objects/a/b'), { kind: 'method-not-allowed', allowed: ['PUT'] });
  // Plain parameters still take exactly one segment.
  t.deepEqual(found('/a/x/b', 'GET'), { id: 'x' });
  t.is(found('/a/x/y/b', 'GET'), 'not-found');
});

test('router: a rest parameter anywhere but last is a bug of the route table', (t) => {
  t.throws(() => createRouter([route('GET', '/a/:rest*/b')]), { instanceOf: TypeError });
});
