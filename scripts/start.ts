import { spawn, type ChildProcess } from 'node:child_process';

/**
 * `npm start`: the whole embedded stack as two processes, as it deploys: the control plane (API,
 * dev identity provider, SQLite store and task queue) on :3000 and the enclave worker on :8080.
 * Each keeps its own output prefix; Ctrl-C (or SIGTERM) stops both cleanly and state stays in
 * the data directory. If either exits on its own, the other is stopped too.
 */
const parts: Array<{ name: string; entry: string }> = [
  { name: 'api', entry: 'functions/local/main.ts' },
  { name: 'worker', entry: 'enclave-worker/main.ts' },
];

const children: ChildProcess[] = [];
let stopping = false;

function prefix(name: string, stream: NodeJS.WritableStream) {
  let pending = '';
  return (chunk: Buffer) => {
    pending += chunk.toString();
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) stream.write(`[${name}] ${line}\n`);
  };
}

function stopAll(signal: NodeJS.Signals): void {
  if (stopping) return;
  stopping = true;
  for (const child of children) if (child.exitCode === null) child.kill(signal);
}

for (const { name, entry } of parts) {
  const child = spawn(process.execPath, [entry], { stdio: ['ignore', 'pipe', 'pipe'], env: process.env });
  child.stdout!.on('data', prefix(name, process.stdout));
  child.stderr!.on('data', prefix(name, process.stderr));
  child.on('exit', (code, signal) => {
    if (!stopping) {
      process.stderr.write(`[${name}] exited (${signal ?? code}); stopping the stack\n`);
      process.exitCode = 1;
      stopAll('SIGTERM');
    }
  });
  children.push(child);
}

process.on('SIGINT', () => stopAll('SIGINT'));
process.on('SIGTERM', () => stopAll('SIGTERM'));
