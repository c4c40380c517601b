import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { REPO_ROOT, checkFile } from '../../scripts/boundaries.ts';

// The SDK must load in a browser: no Node built-ins, no Node globals. The repository-wide
// boundary rules only keep client/ away from server code, so this file adds the stricter rule.
const SDK_RULES = [{ name: 'the SDK is browser-safe', from: /^client\/sdk\//, to: [/^node:/, /^(fs|path|os|http|https|net|crypto|util|child_process|buffer|stream)(\/|$)/] }];
const NODE_GLOBALS = /\b(process\.|Buffer\b|require\(|__dirname|__filename)/;

const files = readdirSync(join(REPO_ROOT, 'client/sdk'))
  .filter((f) => f.endsWith('.ts'))
  .map((f) => `client/sdk/${f}`);

test('sdk: has source files to check', (t) => {
  t.true(files.includes('client/sdk/api-client.ts'));
});

for (const file of files) {
  test(`sdk: ${file} imports no Node built-in and uses no Node global`, (t) => {
    const source = readFileSync(join(REPO_ROOT, file), 'utf8');
    t.deepEqual(checkFile(file, source, SDK_RULES), []);
    t.notRegex(source, NODE_GLOBALS);
  });
}

test('sdk: the browser-safety rule flags a Node import', (t) => {
  t.is(checkFile('client/sdk/x.ts', "import { readFile } from 'node:fs/promises';", SDK_RULES).length, 1);
});
