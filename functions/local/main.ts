import { loadConfig } from '../config.ts';
import { jsonLogger } from '../http/logger.ts';
import { DB_FILE, startLocalStack } from './stack.ts';
import { join } from 'node:path';

/**
 * `npm start`: the whole embedded stack on this machine, no cloud account. Ctrl-C stops it
 * cleanly; state stays in the data directory for the next start.
 */
async function main(): Promise<void> {
  const config = loadConfig(process.env);
  if (config.mode !== 'local') throw new Error('npm start runs the embedded stack; unset CLEANROOM_MODE or set it to local');
  const stack = await startLocalStack({
    dataDir: config.dataDir,
    apiPort: config.apiPort,
    apiHost: config.apiHost,
    workerUrl: config.teeServiceEndpoint,
    maxDatasetBytes: config.maxDatasetBytes,
    log: jsonLogger(),
  });
  const lines = [
    'Clean room, embedded stack (local mode: dev identity, no TEE hardware)',
    `  API            ${stack.apiUrl}/api/tee  (OpenAPI: ${stack.apiUrl}/api/tee/openapi.json)`,
    `  dev identity   ${stack.apiUrl}/dev-idp  (WARNING: issues tokens for any email; local only)`,
    `  task queue     SQLite, pushing to ${config.teeServiceEndpoint}/tasks`,
    `  data           ${join(config.dataDir, DB_FILE)}`,
    `  objects        ${stack.objectsDir}  (ciphertext only; datasets up to ${config.maxDatasetBytes} bytes)`,
    `  try            npx cleanroom login --email you@example.com && npx cleanroom session create --name demo`,
    'Ctrl-C to stop.',
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    process.stdout.write(`\n${signal}: stopping...\n`);
    stack.close().then(
      () => {
        process.stdout.write('stopped; state kept in the data directory\n');
        process.exit(0);
      },
      (error: unknown) => {
        process.stderr.write(`error while stopping: ${String(error)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
