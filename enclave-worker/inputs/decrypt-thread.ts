/**
 * Entry point of a decryption thread (started by `decrypt-threads.ts`, never imported). It runs
 * one dataset at a time: ciphertext chunks arrive as messages, `decryptDataset` authenticates and
 * decrypts them, and the plaintext is written to a file descriptor the worker opened (threads
 * share the process's descriptors). The key never leaves the worker process: threads are part
 * of it. Failures are reported as fixed codes only.
 */
import { writeSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { decryptDataset } from '../../protocol/dataset-format.ts';
import { CleanroomError } from '../../protocol/errors.ts';
import { nodeAead } from '../../runtime/aead-node.ts';
import type { ThreadReply, ThreadRequest } from './decrypt-messages.ts';

if (parentPort === null) throw new TypeError('decrypt-thread runs as a worker thread');
const port = parentPort;

interface Job {
  queue: Uint8Array[];
  ended: boolean;
  wake: (() => void) | undefined;
}
let job: Job | undefined;

function reply(message: ThreadReply): void {
  port.postMessage(message);
}

async function run(request: Extract<ThreadRequest, { t: 'start' }>): Promise<void> {
  const current: Job = { queue: [], ended: false, wake: undefined };
  job = current;
  const ciphertext = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        while (current.queue.length === 0 && !current.ended) await new Promise<void>((resolve) => (current.wake = resolve));
        const chunk = current.queue.shift();
        if (chunk === undefined) controller.close();
        else {
          controller.enqueue(chunk);
          reply({ t: 'ack' });
        }
      },
    },
    { highWaterMark: 0 },
  );
  const key = new Uint8Array(request.key);
  try {
    const decrypted = decryptDataset({ key, ciphertext, expect: request.expect, aead: nodeAead });
    key.fill(0);
    const reader = decrypted.plaintext.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      let offset = 0;
      while (offset < value.byteLength) offset += writeSync(request.fd, value, offset);
    }
    reply({ t: 'done', header: await decrypted.header });
  } catch (error) {
    reply({ t: 'error', code: error instanceof CleanroomError ? error.code : 'INTERNAL' });
  } finally {
    key.fill(0);
    request.key.fill(0);
    job = undefined;
  }
}

port.on('message', (message: ThreadRequest) => {
  if (message.t === 'start') void run(message);
  else if (job !== undefined) {
    if (message.t === 'chunk') job.queue.push(message.bytes);
    else job.ended = true;
    job.wake?.();
    job.wake = undefined;
  }
});
