import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';

/** Where Google's Firestore emulator is installed on this kind of machine (CI's too). */
export const EMULATOR_BIN = process.env.FIRESTORE_EMULATOR_BIN ?? '/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud_firestore_emulator';

export interface RunningEmulator {
  /** `127.0.0.1:PORT`, the value for `FIRESTORE_EMULATOR_HOST`. */
  host: string;
  port: number;
  stop(): Promise<void>;
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * Starts the real Firestore emulator on 127.0.0.1 in its own process group and waits until it
 * answers. Throws (loudly, never skips) when it is missing or does not come up: CI must run it.
 */
export async function startFirestoreEmulator(options: { rules?: string; timeoutMs?: number } = {}): Promise<RunningEmulator> {
  const port = await freePort();
  const args = ['--host=127.0.0.1', `--port=${port}`];
  if (options.rules) args.push(`--rules=${options.rules}`);
  const child: ChildProcess = spawn(EMULATOR_BIN, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (d) => (output += String(d)));
  child.stderr?.on('data', (d) => (output += String(d)));
  let exited = false;
  child.on('exit', () => (exited = true));
  const spawnError = new Promise<never>((_, reject) => child.on('error', (e) => reject(new Error(`Firestore emulator could not start (${EMULATOR_BIN}): ${e.message}`))));

  // The launcher is a shell script that runs java as its child: signal the whole group, then
  // wait until no member is left, so no Java process outlives the test.
  const stop = async (): Promise<void> => {
    const pgid = child.pid;
    if (pgid === undefined) return;
    const alive = (): boolean => {
      try {
        process.kill(-pgid, 0);
        return true;
      } catch {
        return false;
      }
    };
    const signal = (sig: NodeJS.Signals): void => {
      try {
        process.kill(-pgid, sig);
      } catch {}
    };
    signal('SIGTERM');
    const killAt = Date.now() + 3000;
    while (alive()) {
      if (Date.now() > killAt) signal('SIGKILL');
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  const ready = (async () => {
    while (Date.now() < deadline) {
      if (exited) throw new Error(`Firestore emulator exited early:\n${output}`);
      try {
        const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(1000) });
        if (res.ok && (await res.text()).trim() === 'Ok') return;
      } catch {}
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`Firestore emulator did not answer on port ${port} in time:\n${output}`);
  })();
  try {
    await Promise.race([ready, spawnError]);
  } catch (error) {
    await stop();
    throw error;
  }
  return { host: `127.0.0.1:${port}`, port, stop };
}
