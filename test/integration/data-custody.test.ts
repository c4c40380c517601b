import test, { type ExecutionContext } from 'ava';
import { createReadStream, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { Readable } from 'node:stream';
import { importJWK, type CryptoKey } from 'jose';
import { unwrapDataKey } from '../../protocol/data-key.ts';
import { objectKeys } from '../../protocol/dataset.ts';
import { decryptDataset } from '../../protocol/dataset-format.ts';
import { LocalKeyRing } from '../../enclave-worker/keys/local-key-ring.ts';
import { sessionKeyAad } from '../../enclave-worker/keys/port.ts';
import { startDataStack, type DataStack } from '../client/data-stack.ts';
import { runCli, tempHome, tempRoot, type CliResult } from '../client/local-stack.ts';

/**
 * What the platform holds, after a full flow through the real stack (control plane, worker child
 * process, CLI): docs/architecture.md invariants 2 and 3, tested the way an attacker would look.
 *
 * 1. Everything the store (SQLite: every row of every table, and the raw database files) and the
 *    object store (every file) hold contains no plaintext value and no unwrapped key: not the
 *    data keys, not the session private key, in any encoding.
 * 2. Crypto-shredding: with full access to the store, the object store AND the worker's key ring,
 *    the dataset decrypts while the session is open (so the attack is real), and after the
 *    session is closed it cannot be decrypted any more: the wrapped session key and the dataset
 *    objects are gone, and the wrapped data keys left in the store open with nothing that remains.
 */

const ALICE = 'alice@example.com';
const BOB = 'bob@example.com';
// Values that must never appear in anything the platform stores.
const SECRET_EMAIL = 'zq-sentinel-7f3a9c@private.example';
const SECRET_REGION = 'sentinel-region-x9q2';

let stack: DataStack;
let homes: string;
test.before(async () => {
  homes = tempRoot();
  stack = await startDataStack();
});
test.after.always(async () => {
  await stack?.close();
});

async function person(email: string) {
  const home = tempHome(homes);
  const run = (args: string[]) => runCli(args, { CLEANROOM_API: stack.apiUrl, CLEANROOM_HOME: home, TEE_SERVICE_ENDPOINT: stack.workerUrl });
  const login = await run(['login', '--email', email]);
  if (login.code !== 0) throw new Error(`login failed: ${login.stderr}`);
  return { email, home, run };
}

function ok(t: ExecutionContext, res: CliResult, what: string): CliResult {
  t.is(res.code, 0, `${what}: ${res.stderr}\n${stack.workerLog().slice(-2000)}`);
  return res;
}

/** Every file under `dir`, recursively. */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .map((name) => join(dir, name))
    .filter((path) => statSync(path).isFile());
}

/** Everything the store holds: each row of each table as text, plus the raw database files. */
function storeContents(): { rows: string; rawFiles: Buffer[] } {
  const db = new DatabaseSync(join(stack.dataDir, 'cleanroom.sqlite'), { readOnly: true });
  try {
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[];
    const rows = tables.map(({ name }) => JSON.stringify(db.prepare(`SELECT * FROM "${name.replaceAll('"', '""')}"`).all())).join('\n');
    const rawFiles = readdirSync(stack.dataDir)
      .filter((name) => name.startsWith('cleanroom.sqlite'))
      .map((name) => readFileSync(join(stack.dataDir, name)));
    return { rows, rawFiles };
  } finally {
    db.close();
  }
}

/** The forms a secret could be stored in. */
function encodings(secret: Uint8Array): Buffer[] {
  const b = Buffer.from(secret);
  return [b, Buffer.from(b.toString('hex')), Buffer.from(b.toString('base64')), Buffer.from(b.toString('base64url'))];
}

function contains(haystacks: Buffer[], needle: Buffer): boolean {
  return haystacks.some((h) => h.includes(needle));
}

/** The attacker's path: the key ring unwraps the stored session key, which unwraps the data key, which decrypts the object. */
async function decryptWithFullAccess(sessionId: string, datasetId: string, wrappedKey: string): Promise<{ plaintext: Buffer; dataKey: Uint8Array; sessionD: string }> {
  const stored = JSON.parse(readFileSync(join(stack.objectsDir, objectKeys.sessionKey(sessionId, 1)), 'utf8')) as { wrapped_private: string; thumbprint: string };
  const ring = LocalKeyRing.open(join(stack.dataDir, 'worker', 'key-ring.json'));
  const privateJwk = JSON.parse(new TextDecoder().decode(await ring.unwrap(Buffer.from(stored.wrapped_private, 'base64url'), sessionKeyAad(sessionId, 1))));
  const sessionKey = (await importJWK(privateJwk, 'ECDH-ES+A256KW')) as CryptoKey;
  const dataKey = await unwrapDataKey({ jwe: wrappedKey, sessionPrivateKey: sessionKey, sessionId, datasetId, sessionKeyThumbprint: stored.thumbprint });
  const ciphertext = Readable.toWeb(createReadStream(join(stack.objectsDir, objectKeys.dataset(sessionId, datasetId)))) as ReadableStream<Uint8Array>;
  const { plaintext } = decryptDataset({ key: dataKey, ciphertext, expect: { session_id: sessionId, dataset_id: datasetId } });
  return { plaintext: Buffer.from(await new Response(plaintext).arrayBuffer()), dataKey, sessionD: privateJwk.d as string };
}

test('custody: the store and object store hold no plaintext and no unwrapped key; closing the session makes its data undecryptable even with the key ring', async (t) => {
  const alice = await person(ALICE);
  const bob = await person(BOB);
  const sessionId = JSON.parse(ok(t, await alice.run(['session', 'create', '--name', 'custody', '--participant', BOB, '--approval', 'none', '--json']), 'create').stdout).id as string;
  ok(t, await alice.run(['session', 'join', sessionId]), 'alice join');
  ok(t, await bob.run(['session', 'join', sessionId]), 'bob join');

  const csv = ['email,region,spend', `${SECRET_EMAIL},${SECRET_REGION},125`, 'a@x.example,north,10', 'b@y.example,north,20'].join('\n') + '\n';
  const file = join(homes, 'customers.csv');
  writeFileSync(file, csv);
  const uploaded = JSON.parse(ok(t, await alice.run(['dataset', 'upload', sessionId, file, '--table', 'customers', '--allow-insecure-dev', '--json']), 'upload').stdout);
  const proposed = JSON.parse(
    ok(t, await alice.run(['query', 'propose', sessionId, '--sql', 'SELECT region, count(*) AS n, sum(spend) AS total FROM customers GROUP BY region ORDER BY region', '--json']), 'propose').stdout,
  );
  const done = JSON.parse(ok(t, await alice.run(['query', 'show', sessionId, proposed.id, '--wait', '--timeout', '120', '--json']), 'wait').stdout);
  t.is(done.status, 'SUCCEEDED', stack.workerLog().slice(-2000));
  const result = JSON.parse(ok(t, await alice.run(['result', 'get', sessionId, proposed.id, '--allow-insecure-dev', '--json']), 'result').stdout);
  t.deepEqual(result.rows, [
    ['north', '2', '30'],
    [SECRET_REGION, '1', '125'],
  ]);

  // The wrapped data key as the store keeps it.
  const store = storeContents();
  const db = new DatabaseSync(join(stack.dataDir, 'cleanroom.sqlite'), { readOnly: true });
  const record = JSON.parse((db.prepare('SELECT doc FROM datasets WHERE id = ?').get(uploaded.id) as { doc: string }).doc) as { wrapped_key: string };
  db.close();

  // The attack works while the session is open: this is what the shredding must stop.
  const opened = await decryptWithFullAccess(sessionId, uploaded.id, record.wrapped_key);
  t.is(opened.plaintext.toString('utf8'), csv);

  // 1. Nothing stored holds plaintext or an unwrapped key.
  const objects = filesUnder(stack.objectsDir).map((path) => readFileSync(path));
  t.true(objects.length >= 3, 'the dataset, the wrapped session key and the sealed result are stored');
  const everything = [Buffer.from(store.rows), ...store.rawFiles, ...objects];
  for (const value of [SECRET_EMAIL, SECRET_REGION]) t.false(contains(everything, Buffer.from(value)), `plaintext value ${value} is stored somewhere`);
  for (const form of encodings(opened.dataKey)) t.false(contains(everything, form), 'a data key is stored unwrapped');
  t.false(contains(everything, Buffer.from(opened.sessionD)), 'the session private key is stored unwrapped');
  t.false(contains(everything, Buffer.from(csv)), 'the plaintext file is stored');

  // 2. Close: the key and dataset objects go at once.
  ok(t, await alice.run(['session', 'close', sessionId]), 'close');
  t.false(existsSync(join(stack.objectsDir, objectKeys.sessionKey(sessionId, 1))), 'the wrapped session key is gone');
  t.deepEqual(filesUnder(join(stack.objectsDir, objectKeys.sessionKeyPrefix(sessionId))), []);
  t.deepEqual(filesUnder(join(stack.objectsDir, objectKeys.datasetPrefix(sessionId))), []);
  // Full access now: store, object store and the key ring. No stored thing is the session key any more.
  const after = [Buffer.from(storeContents().rows), ...storeContents().rawFiles, ...filesUnder(stack.objectsDir).map((path) => readFileSync(path))];
  t.false(contains(after, Buffer.from('wrapped_private')), 'no wrapped session key survives anywhere');
  await t.throwsAsync(decryptWithFullAccess(sessionId, uploaded.id, record.wrapped_key), { code: 'ENOENT' });
  // The sealed result stays, and stays readable by its recipients only.
  ok(t, await alice.run(['result', 'get', sessionId, proposed.id, '--allow-insecure-dev', '--json']), 'result after close');
});
