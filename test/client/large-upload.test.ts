import test from 'ava';
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { startDataStack, type DataStack } from './data-stack.ts';
import { runCli, tempHome, tempRoot } from './local-stack.ts';

/**
 * "Files larger than memory work": the CLI describes, encrypts, hashes and uploads a CSV in
 * bounded memory. Its peak resident memory (GNU time's maximum RSS) is measured for a 64 MiB and
 * a 512 MiB file: eight times the data may cost only a little more memory (the garbage collector
 * lets a few hundred MB of freed buffers accumulate, whatever the file's size), so no pass holds
 * the file. The stored ciphertext is the file's size plus the format's overhead.
 */

const TIME = '/usr/bin/time';
const BIN = resolve(import.meta.dirname, '../../client/cli/bin.ts');
const SMALL_BYTES = 64 * 1024 * 1024;
const LARGE_BYTES = 512 * 1024 * 1024;
/** How much more the large file may cost: far less than the 448 MiB more data. */
const EXTRA_LIMIT_KB = 160 * 1024;

if (!existsSync(TIME)) {
  console.warn(`SKIPPED: ${TIME} not installed (apt-get install -y time): it measures the CLI's peak memory`);
  test.skip(`large upload: SKIPPED, ${TIME} is not installed`, () => {});
} else {
  let stack: DataStack;
  let homes: string;
  test.before(async () => {
    homes = tempRoot();
    stack = await startDataStack();
  });
  test.after.always(async () => {
    await stack?.close();
  });

  /** Writes rows until the file reaches `bytes`; returns the row count. */
  function writeCsv(path: string, bytes: number): number {
    const fd = openSync(path, 'w', 0o600);
    let written = 0;
    let rows = 0;
    try {
      written += writeSync(fd, 'id,label,amount\n');
      while (written < bytes) {
        const lines: string[] = [];
        for (let i = 0; i < 20_000; i++, rows++) lines.push(`${rows},label-${(rows * 2654435761) % 1_000_003},${rows % 977}.25`);
        written += writeSync(fd, `${lines.join('\n')}\n`);
      }
    } finally {
      closeSync(fd);
    }
    return rows;
  }

  async function uploadMeasured(t: import('ava').ExecutionContext, env: Record<string, string>, sessionId: string, table: string, bytes: number): Promise<number> {
    const file = join(homes, `${table}.csv`);
    const rows = writeCsv(file, bytes);
    const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((done, fail) => {
      const child = spawn(TIME, ['-f', 'maxrss_kb=%M', process.execPath, BIN, 'dataset', 'upload', sessionId, file, '--table', table, '--allow-insecure-dev', '--json'], {
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
      child.on('error', fail);
      child.on('close', (status) => done({ code: status, stdout: out, stderr: err }));
    });
    t.is(code, 0, stderr.slice(-2000));
    const uploaded = JSON.parse(stdout);
    t.is(uploaded.row_count, rows);
    const size = statSync(file).size;
    rmSync(file);
    t.true(uploaded.ciphertext_bytes > size && uploaded.ciphertext_bytes < size + 1024 * 1024, 'ciphertext = file + per-record overhead');
    t.is(statSync(join(stack.objectsDir, 'datasets', sessionId, `${uploaded.id}.crds`)).size, uploaded.ciphertext_bytes);
    const maxRssKb = Number(/maxrss_kb=(\d+)/.exec(stderr)?.[1]);
    t.log(`file ${Math.round(size / 2 ** 20)} MiB: CLI peak RSS ${Math.round(maxRssKb / 1024)} MiB`);
    t.true(maxRssKb > 0);
    return maxRssKb;
  }

  test('large upload: eight times the file costs the CLI about the same memory: no pass holds the file', async (t) => {
    const home = tempHome(homes);
    const env = { PATH: process.env.PATH ?? '', HOME: home, CLEANROOM_HOME: home, CLEANROOM_API: stack.apiUrl, TEE_SERVICE_ENDPOINT: stack.workerUrl };
    t.is((await runCli(['login', '--email', 'alice@example.com'], env)).code, 0);
    const created = await runCli(['session', 'create', '--name', 'large', '--approval', 'none', '--json'], env);
    const sessionId = JSON.parse(created.stdout).id as string;
    t.is((await runCli(['session', 'join', sessionId], env)).code, 0);
    const small = await uploadMeasured(t, env, sessionId, 'small', SMALL_BYTES);
    const large = await uploadMeasured(t, env, sessionId, 'large', LARGE_BYTES);
    t.true(large - small < EXTRA_LIMIT_KB, `512 MiB cost ${Math.round((large - small) / 1024)} MiB more than 64 MiB`);
  });
}
