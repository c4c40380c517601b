/**
 * Reports what a context process can reach, for the sandbox tests: started with the same command
 * line as a real context (`contextCommand`), it prints one JSON line and exits.
 * argv-free on purpose: the port to try and the file to read come on stdin.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { networkInterfaces } from 'node:os';
import process from 'node:process';

function attempt(action: () => unknown): string {
  try {
    action();
    return 'allowed';
  } catch (error) {
    return (error as NodeJS.ErrnoException).code ?? 'refused';
  }
}

process.stdin.once('data', (chunk: Buffer) => {
  const { port, secretFile } = JSON.parse(chunk.toString('utf8')) as { port: number; secretFile: string };
  const facts = {
    uid: process.getuid?.(),
    gid: process.getgid?.(),
    groups: process.getgroups?.(),
    env: Object.keys(process.env).sort(),
    interfaces: Object.keys(networkInterfaces()),
    readSecret: attempt(() => readFileSync(secretFile)),
    writeTmp: attempt(() => writeFileSync('/tmp/context-probe-was-here', 'x')),
    spawn: attempt(() => execFileSync('/bin/true')),
  };
  const socket = connect({ host: '127.0.0.1', port });
  const report = (network: string): void => {
    socket.destroy();
    process.stdout.write(`${JSON.stringify({ ...facts, network })}\n`, () => process.exit(0));
  };
  socket.once('connect', () => report('connected'));
  socket.once('error', (error: NodeJS.ErrnoException) => report(error.code ?? 'error'));
  setTimeout(() => report('timeout'), 3000);
});
