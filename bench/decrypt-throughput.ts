/**
 * Dataset decryption throughput: `decryptDataset` with `nodeAead` and with `webCryptoAead`, next
 * to OpenSSL's own AES-256-GCM speed on this machine, in the same run.
 *
 * `node bench/decrypt-throughput.ts [--mib 512] [--chunk-kib 1024] [--runs 3]`
 *
 * The plaintext is random, generated and encrypted record by record (never held whole); the
 * ciphertext is kept in memory and fed to the decryptor in 64 KiB slices, as a file or object
 * store read would arrive, so the measured path includes reassembling records. The decrypted
 * plaintext is counted and dropped. MB = 10^6 bytes, as `openssl speed` reports.
 * Note: `openssl speed -evp aes-256-gcm` times encryption; GCM decryption costs the same.
 */
import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { type ChunkAead, decryptDataset, encryptDataset, generateDataKey, webCryptoAead } from '../protocol/dataset-format.ts';
import { nodeAead } from '../runtime/aead-node.ts';

const { values } = parseArgs({
  options: { mib: { type: 'string', default: '512' }, 'chunk-kib': { type: 'string', default: '1024' }, runs: { type: 'string', default: '3' } },
});
const totalBytes = Number(values.mib) * 1024 * 1024;
const chunkBytes = Number(values['chunk-kib']) * 1024;
const runs = Number(values.runs);
const SLICE = 64 * 1024;
const OPENSSL = '/usr/bin/openssl';
const OPENSSL_ARGS = ['speed', '-evp', 'aes-256-gcm', '-bytes', '1048576', '-seconds', '3'];

const header = {
  session_id: 'bench-session',
  dataset_id: crypto.randomUUID(),
  owner_email: 'bench@example.com',
  table: 'bench',
  format: 'csv' as const,
  schema: [{ name: 'blob', type: 'VARCHAR' as const }],
  row_count: 0,
  plaintext_bytes: totalBytes,
};
const expect = { session_id: header.session_id, dataset_id: header.dataset_id };
const key = generateDataKey();

const mbps = (bytes: number, ms: number): number => bytes / 1e6 / (ms / 1000);

async function encryptToMemory(): Promise<{ records: Uint8Array[]; ms: number }> {
  let produced = 0;
  const plaintext = new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        if (produced >= totalBytes) return controller.close();
        const piece = randomFillSync(new Uint8Array(Math.min(chunkBytes, totalBytes - produced)));
        produced += piece.byteLength;
        controller.enqueue(piece);
      },
    },
    { highWaterMark: 0 },
  );
  const records: Uint8Array[] = [];
  const started = performance.now();
  for await (const part of encryptDataset({ header, key, plaintext, chunkBytes, aead: nodeAead })) records.push(part);
  return { records, ms: performance.now() - started };
}

/** The ciphertext as a stream of 64 KiB views (no copies on the producer side). */
function sliced(records: Uint8Array[]): ReadableStream<Uint8Array> {
  let r = 0;
  let offset = 0;
  return new ReadableStream(
    {
      pull(controller) {
        const record = records[r];
        if (!record) return controller.close();
        controller.enqueue(record.subarray(offset, offset + SLICE));
        offset += SLICE;
        if (offset >= record.byteLength) {
          r++;
          offset = 0;
        }
      },
    },
    { highWaterMark: 0 },
  );
}

async function decryptOnce(records: Uint8Array[], aead: ChunkAead): Promise<number> {
  const started = performance.now();
  const { plaintext } = decryptDataset({ key, ciphertext: sliced(records), expect, aead });
  let bytes = 0;
  for await (const chunk of plaintext) bytes += chunk.byteLength;
  const ms = performance.now() - started;
  if (bytes !== totalBytes) throw new Error(`decrypted ${bytes} bytes, expected ${totalBytes}`);
  return ms;
}

function opensslSpeed(): { mbps: number; version: string } {
  const version = spawnSync(OPENSSL, ['version'], { encoding: 'utf8' }).stdout.trim();
  const run = spawnSync(OPENSSL, OPENSSL_ARGS, { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`openssl speed failed: ${run.stderr}`);
  // The result line: "AES-256-GCM  3456789.12k" (1000s of bytes per second).
  const line = run.stdout.split('\n').find((l) => /^aes-256-gcm\s/i.test(l.trim()));
  const match = line?.match(/([\d.]+)k\s*$/);
  if (!match) throw new Error(`cannot parse openssl speed output:\n${run.stdout}`);
  return { mbps: Number(match[1]) / 1000, version };
}

console.log(`machine: ${cpus()[0]?.model ?? 'unknown CPU'} x${cpus().length}; node ${process.version} (OpenSSL ${process.versions.openssl})`);
console.log(`dataset: ${values.mib} MiB random plaintext, ${chunkBytes / 1024} KiB records, ciphertext fed in ${SLICE / 1024} KiB slices; best of ${runs} runs`);

const { records, ms: encryptMs } = await encryptToMemory();
const ciphertextBytes = records.reduce((n, r) => n + r.byteLength, 0);
console.log(`encrypt (nodeAead, incl. random generation): ${mbps(totalBytes, encryptMs).toFixed(0)} MB/s; ciphertext ${ciphertextBytes} bytes`);

const results: Record<string, number> = {};
for (const [name, aead] of [
  ['nodeAead', nodeAead],
  ['webCryptoAead', webCryptoAead],
] as const) {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) times.push(await decryptOnce(records, aead));
  results[name] = mbps(totalBytes, Math.min(...times));
  console.log(`decryptDataset ${name.padEnd(13)}: ${results[name]!.toFixed(0)} MB/s (runs: ${times.map((t) => `${(t / 1000).toFixed(2)} s`).join(', ')})`);
}

const openssl = opensslSpeed();
console.log(`${OPENSSL} ${OPENSSL_ARGS.join(' ')} (${openssl.version}): ${openssl.mbps.toFixed(0)} MB/s`);
for (const [name, value] of Object.entries(results)) {
  console.log(`ratio ${name.padEnd(13)} / openssl: ${(value / openssl.mbps).toFixed(2)}`);
}
