import test from 'ava';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { CleanroomError } from '../../../protocol/errors.ts';
import { ExecutionContext } from '../../../enclave-worker/executor/context.ts';
import { resolveLimits } from '../../../enclave-worker/executor/limits.ts';
import { inputDirectoryRoot } from '../../../enclave-worker/executor/input-files.ts';
import { NO_SANDBOX } from '../../../enclave-worker/executor/sandbox.ts';

// A context is untrusted once it has seen query text: whatever it writes on its pipe, the worker
// ends up with a fixed code, a dead child and bounded memory. These children skip DuckDB.
const ROGUE = new URL('./children/rogue.ts', import.meta.url).pathname;
const limits = resolveLimits({ timeoutMs: 3000, maxRows: 10, maxBytes: 64 * 1024 });

async function outcomeOf(behaviour: string, run = false): Promise<string> {
  const context = new ExecutionContext({ limits, sandbox: NO_SANDBOX, entry: ROGUE });
  try {
    await context.ready;
    context.arm();
    await context.parse(behaviour);
    if (run) await context.run();
    return 'no error';
  } catch (error) {
    return error instanceof CleanroomError ? error.code : `not a CleanroomError: ${String(error)}`;
  } finally {
    context.kill();
    await context.exited;
  }
}

const cases: Array<[string, string, boolean, string]> = [
  ['writes without end', 'flood', false, 'RESULT_TOO_LARGE'],
  ['writes a frame that is not JSON', 'garbage', false, 'QUERY_FAILED'],
  ['reports a code outside the fixed set, with a message', 'wrong-shape', false, 'QUERY_FAILED'],
  ['exits while parsing', 'exit', false, 'POLICY_VIOLATION'],
  ['aborts while parsing', 'abort', false, 'POLICY_VIOLATION'],
  ['hangs', 'hang', false, 'QUERY_TIMEOUT'],
  ['sends a frame nobody asked for', 'unsolicited', false, 'QUERY_FAILED'],
  ['returns more rows than the cap under a false count', 'lie', true, 'RESULT_TOO_LARGE'],
];

for (const [name, behaviour, run, code] of cases) {
  test(`context: a child that ${name} ends with ${code}`, async (t) => {
    t.is(await outcomeOf(behaviour, run), code);
  });
}

test('context: a context that cannot start reports INTERNAL, not a hang, and leaves no directory', async (t) => {
  const context = new ExecutionContext({ limits, sandbox: NO_SANDBOX, execPath: '/nonexistent/node' });
  t.is((await t.throwsAsync(context.ready, { instanceOf: CleanroomError })).code, 'INTERNAL');
  await context.exited;
  t.false(existsSync(context.directory));
});

test('context: each context has its own 0711 directory on tmpfs holding only the warm-up inputs until ready', async (t) => {
  const root = inputDirectoryRoot();
  const context = new ExecutionContext({ limits, sandbox: NO_SANDBOX, entry: ROGUE });
  try {
    t.is(dirname(context.directory), root.path);
    t.true(basename(context.directory).startsWith('cleanroom-ctx-'));
    t.is(statSync(context.directory).mode & 0o777, 0o711);
    t.deepEqual(readdirSync(context.directory).sort(), ['.warm-up.csv', '.warm-up.parquet']);
    t.is(statSync(join(context.directory, '.warm-up.csv')).mode & 0o777, 0o400);
    await context.ready;
    // Deleted once the context is ready: nothing is left for the query to find.
    t.deepEqual(readdirSync(context.directory), []);
  } finally {
    context.kill();
    await context.exited;
  }
  t.false(existsSync(context.directory));
  if (existsSync('/dev/shm')) t.true(root.tmpfs, 'expected /dev/shm to be tmpfs here');
});

test('context: the directory is removed when the child dies on its own, too', async (t) => {
  const context = new ExecutionContext({ limits, sandbox: NO_SANDBOX, entry: ROGUE });
  await context.ready;
  context.arm();
  await t.throwsAsync(context.parse('exit'));
  await context.exited;
  t.false(existsSync(context.directory));
});

test('context: whileAlive fails with the kill code as soon as the context dies', async (t) => {
  const short = resolveLimits({ timeoutMs: 300 });
  const context = new ExecutionContext({ limits: short, sandbox: NO_SANDBOX, entry: ROGUE });
  await context.ready;
  context.arm();
  let aborted = false;
  context.signal.addEventListener('abort', () => (aborted = true));
  const never = new Promise<never>(() => {});
  t.is((await t.throwsAsync(context.whileAlive(never), { instanceOf: CleanroomError })).code, 'QUERY_TIMEOUT');
  t.true(aborted);
  await context.dispose();
  t.false(existsSync(context.directory));
});
