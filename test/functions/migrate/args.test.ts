import test from 'ava';
import { parseMigrateArgs } from '../../../functions/migrate/args.ts';

test('args: no flags is a real run over Firestore', (t) => {
  t.deepEqual(parseMigrateArgs([]), { dryRun: false, json: false, project: undefined, limit: undefined, fromNdjson: undefined, help: false });
});

test('args: every flag is read', (t) => {
  t.deepEqual(parseMigrateArgs(['--dry-run', '--json', '--project', 'my-project-1', '--limit', '25', '--from-ndjson', 'tees.ndjson']), {
    dryRun: true,
    json: true,
    project: 'my-project-1',
    limit: 25,
    fromNdjson: 'tees.ndjson',
    help: false,
  });
  t.is(parseMigrateArgs(['--project=example.com:legacy-app']).project, 'example.com:legacy-app');
});

const bad: string[][] = [
  ['--frobnicate'],
  ['positional'],
  ['--limit'],
  ['--limit', '0'],
  ['--limit', '-3'],
  ['--limit', '1.5'],
  ['--project', 'UPPER'],
  ['--project', 'x'],
  ['--from-ndjson', ''],
  ['--dry-run=yes'],
];
for (const argv of bad) {
  test(`args: ${JSON.stringify(argv)} is refused with a TypeError`, (t) => {
    t.throws(() => parseMigrateArgs(argv), { instanceOf: TypeError });
  });
}
