import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import test from 'ava';
import { nodeVersionProblem } from '../../client/cli/node-check.js';

const BIN = resolve(import.meta.dirname, '../../client/cli/bin.js');

const cases: Array<[string, boolean]> = [
  ['v20.20.2', false],
  ['v22.18.0', false],
  ['v24.11.1', false],
  ['v24.12.0', true],
  ['v24.21.0', true],
  ['v25.0.0', true],
  ['v26.1.0', true],
  ['garbage', false],
];
for (const [version, runs] of cases) {
  test(`node check: Node ${version} ${runs ? 'runs the CLI' : 'is refused with one line naming the version'}`, (t) => {
    const problem = nodeVersionProblem(version);
    if (runs) t.is(problem, null);
    else {
      t.regex(problem ?? '', /^error: NODE_TOO_OLD: cleanroom needs Node 24\.12 or newer/);
      t.true(problem!.includes(version));
      t.false(problem!.includes('\n'));
    }
  });
}

test("node check: with the repository's own Node 24 at hand, the line says to put it first on PATH", (t) => {
  const problem = nodeVersionProblem('v20.20.2', '/repo/node_modules/node/bin');
  t.regex(problem ?? '', /: put \/repo\/node_modules\/node\/bin \(the Node 24 that `npm ci` installed\) first on your PATH/);
  t.is(nodeVersionProblem('v24.12.0', '/repo/node_modules/node/bin'), null);
});

test('node check: the Node running the tests runs the CLI', (t) => {
  t.is(nodeVersionProblem(process.version), null);
});

/** An installed Node older than 24.12 (the system's, outside npm's PATH), if there is one. */
function olderNode(): string | null {
  for (const path of ['/usr/bin/node', '/usr/local/bin/node']) {
    if (!existsSync(path)) continue;
    const version = execFileSync(path, ['--version'], { encoding: 'utf8' }).trim();
    if (nodeVersionProblem(version) !== null) return path;
  }
  return null;
}

const older = olderNode();
(older === null ? test.skip : test)(`node check: an older Node running the executable prints one line and exits 2 (${older ?? 'no older Node installed here'})`, (t) => {
  const res = spawnSync(older!, [BIN, 'session', 'list'], { encoding: 'utf8', env: { PATH: '/usr/bin:/bin' } });
  t.is(res.status, 2);
  t.is(res.stdout, '');
  t.regex(res.stderr, /^error: NODE_TOO_OLD: cleanroom needs Node 24\.12 or newer and this is Node v\d+\.\d+\.\d+: .*\n$/);
  // This checkout has its own Node 24 (npm ci): the line points at it.
  t.true(res.stderr.includes(resolve(import.meta.dirname, '../../node_modules/node/bin')), res.stderr);
  t.is(res.stderr.split('\n').length, 2, 'one line');
});
