import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Runs `npm start`'s entry point as a real process, the way a user does. */
function startMain(dataDir: string) {
  const child = spawn(process.execPath, ['functions/local/main.ts'], {
    env: { ...process.env, CLEANROOM_DATA_DIR: dataDir, CLEANROOM_API_PORT: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += String(d)));
  child.stderr.on('data', () => {});
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const url = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no banner: ${out}`)), 20_000);
    child.stdout.on('data', () => {
      const m = /API\s+(http:\/\/[\d.]+:\d+)\/api\/tee/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
  });
  return { child, url, exited, output: () => out };
}

async function post(url: string, path: string, body: unknown, token?: string) {
  const res = await fetch(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as any };
}

test('npm start: serves, stops cleanly on SIGINT, and a restart keeps every session and token', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'cleanroom-main-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));

  const first = startMain(dataDir);
  t.teardown(() => first.child.kill('SIGKILL'));
  const url1 = await first.url;
  const login = await post(url1, '/dev-idp/token', { email: 'alice@example.com' });
  t.is(login.status, 200);
  const token = login.body.id_token as string;
  const created = await post(url1, '/api/tee/sessions', { name: 'survives restarts', participant_emails: ['bob@example.com'] }, token);
  t.is(created.status, 201);
  first.child.kill('SIGINT');
  t.is(await first.exited, 0);
  t.regex(first.output(), /stopped; state kept/);

  const second = startMain(dataDir);
  t.teardown(() => second.child.kill('SIGKILL'));
  const url2 = await second.url;
  // The token issued before the restart still verifies: the dev key lives in the data directory.
  const res = await fetch(`${url2}/api/tee/sessions/${created.body.id}`, { headers: { authorization: `Bearer ${token}` } });
  t.is(res.status, 200);
  t.deepEqual(await res.json(), created.body);
  second.child.kill('SIGTERM');
  t.is(await second.exited, 0);
});
