import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startLocalStack, type LocalStack } from '../../functions/local/stack.ts';

/** The real embedded stack on a free port, with a temporary data directory. */
export async function localStack(): Promise<LocalStack & { stop(): Promise<void> }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'cleanroom-client-stack-'));
  const stack = await startLocalStack({ dataDir, apiPort: 0 });
  return {
    ...stack,
    async stop() {
      await stack.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A directory for the temporary homes of one test file; remove it when the file is done. */
export function tempRoot(): string {
  return mkdtempSync(join(tmpdir(), 'cleanroom-cli-'));
}

/** A fresh CLEANROOM_HOME under `root` that does not exist yet (the CLI creates it). */
export function tempHome(root: string): string {
  return join(mkdtempSync(join(root, 'user-')), 'home');
}

/** A plain HTTP server for answers the real API never gives. */
export async function fakeServer(listener: RequestListener): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer(listener);
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  return { url: `http://127.0.0.1:${port(server)}`, close: () => stop(server) };
}

/** A loopback URL where nothing listens (a port that was just free). */
export async function deadUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const url = `http://127.0.0.1:${port(server)}`;
  await stop(server);
  return url;
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The executable package.json names: the launcher that checks the Node version first. */
const BIN = resolve(import.meta.dirname, '../../client/cli/bin.js');

/** Runs the CLI as a child process with only the environment it needs (undefined values are left out). */
export function runCli(args: string[], env: { CLEANROOM_API?: string; CLEANROOM_HOME: string; [name: string]: string | undefined }): Promise<CliResult> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { PATH: process.env.PATH ?? '', HOME: env.CLEANROOM_HOME, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', fail);
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
}

function port(server: Server): number {
  return (server.address() as AddressInfo).port;
}

function stop(server: Server): Promise<void> {
  return new Promise((done) => {
    server.close(() => done());
    server.closeAllConnections();
  });
}
