import test from 'ava';
import { REPO_ROOT, checkFile, checkRepository, importSpecifiers } from '../scripts/boundaries.ts';

test('boundaries: the repository has no forbidden import', (t) => {
  t.deepEqual(checkRepository(REPO_ROOT), []);
});

test('boundaries: import specifiers are found in every import form', (t) => {
  const src = `import a from './a.ts';\nimport type { B } from "../b.ts";\nexport { c } from './c.ts';\nimport './side.ts';\nconst d = await import('node:fs');\nimport {\n  e,\n} from '@google-cloud/firestore';`;
  t.deepEqual(importSpecifiers(src), ['./a.ts', '../b.ts', './c.ts', './side.ts', 'node:fs', '@google-cloud/firestore']);
});

const violating: Array<[string, string]> = [
  ['functions/core/x.ts', "import { S } from '../adapters/store/sqlite.ts';"],
  ['functions/core/x.ts', "import { Firestore } from '@google-cloud/firestore';"],
  ['functions/core/x.ts', "import { readFileSync } from 'node:fs';"],
  ['enclave-worker/x.ts', "import { r } from '../functions/core/records.ts';"],
  ['protocol/x.ts', "import { webcrypto } from 'node:crypto';"],
  ['protocol/x.ts', "import type { S } from '../functions/core/ports.ts';"],
  ['client/cli/x.ts', "import { app } from '../../functions/http/app.ts';"],
  ['client/sdk/x.ts', "import { printJson } from '../cli/output.ts';"],
];
for (const [file, source] of violating) {
  test(`boundaries: ${file} with "${source}" is flagged`, (t) => {
    t.is(checkFile(file, source).length, 1);
  });
}

test('boundaries: allowed imports are not flagged', (t) => {
  t.deepEqual(checkFile('functions/core/x.ts', "import { e } from '../../protocol/errors.ts';\nimport * as v from 'valibot';"), []);
  t.deepEqual(checkFile('functions/adapters/store/x.ts', "import { Firestore } from '@google-cloud/firestore';"), []);
  t.deepEqual(checkFile('client/cli/x.ts', "import { CleanroomApi } from '../sdk/api-client.ts';"), []);
});
