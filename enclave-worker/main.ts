import { loadWorkerConfig } from './config.ts';
import { startWorker } from './worker.ts';

/** The worker's entry point (`npm run start:worker`, and the Confidential Space container's command). */
async function main(): Promise<void> {
  const config = loadWorkerConfig(process.env);
  const write =
    (severity: string) =>
    (message: string, fields: Record<string, unknown> = {}) =>
      process.stderr.write(`${JSON.stringify({ severity, message, time: new Date().toISOString(), ...fields })}\n`);
  const worker = await startWorker(config, { log: { info: write('INFO'), warn: write('WARNING'), error: write('ERROR') } });
  const lines = [
    `Enclave worker ${config.instanceId} (attestation: ${config.attestationMode}${config.attestationMode === 'insecure-dev' ? ' — WARNING: proves nothing, local only' : ''})`,
    `  listening      http://${config.host}:${config.port}  (/health, /attestation?nonce=, /status, POST /tasks, POST /session-keys)`,
    `  clients use    ${worker.url}`,
    `  data           ${config.dataDir}`,
    `  objects        ${config.objectStore.kind === 'gcs' ? `gs://${config.objectStore.bucket}` : config.objectStore.dir}`,
    `  session keys   ${config.keyService.kind === 'cloud-kms' ? `wrapped by Cloud KMS ${config.keyService.keyName}` : `wrapped by the key ring file ${config.keyService.file} — WARNING: a plain file, local only`}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    process.stdout.write(`${signal}: stopping the worker...\n`);
    worker.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
