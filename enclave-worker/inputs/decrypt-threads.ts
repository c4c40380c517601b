import { Worker } from 'node:worker_threads';
import type { DatasetHeader } from '../../protocol/dataset-format.ts';
import { CleanroomError } from '../../protocol/errors.ts';
import type { ThreadReply, ThreadRequest } from './decrypt-messages.ts';

/** Chunks posted to a thread and not yet taken by its decryptor: bounds the plaintext in flight. */
const MAX_IN_FLIGHT = 4;

/** One dataset to decrypt in a thread. */
export interface DecryptJob {
  /** The raw data key; the caller zeroes its copy afterwards (the thread zeroes its own). */
  key: Uint8Array;
  expect: { session_id: string; dataset_id: string };
  /** An open descriptor of the input file the plaintext goes to. */
  fd: number;
  /** The ciphertext, read once (the caller hashes it on the way). */
  source: ReadableStream<Uint8Array>;
  signal?: AbortSignal;
}

/**
 * A small pool of decryption threads. The worker's main thread reads and hashes a dataset while a
 * thread authenticates, decrypts and writes it, so hashing and decryption use two cores, and two
 * inputs of one query are decrypted side by side. Threads start on first use and are reused.
 */
export class DecryptThreads {
  readonly #size: number;
  readonly #idle: Worker[] = [];
  readonly #all = new Set<Worker>();
  readonly #waiting: Array<(worker: Worker) => void> = [];
  #closed = false;

  constructor(options: { size?: number } = {}) {
    this.#size = Math.max(1, options.size ?? 2);
  }

  /**
   * Decrypts `job.source` into `job.fd`; resolves with the authenticated header once every byte is
   * written, rejects with the format's code (DATASET_CHUNK_TAMPERED, ...) or the source's error.
   * The source is read to its end or cancelled either way.
   */
  async decrypt(job: DecryptJob): Promise<DatasetHeader> {
    const worker = await this.#take();
    let healthy = true;
    try {
      return await this.#run(worker, job);
    } catch (error) {
      // A thread that failed mid-job may hold stale chunks: replace it rather than reuse it.
      healthy = error instanceof CleanroomError && error.code !== 'INTERNAL';
      throw error;
    } finally {
      if (healthy) this.#give(worker);
      else this.#discard(worker);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#all].map((worker) => worker.terminate()));
    this.#all.clear();
    this.#idle.length = 0;
  }

  #run(worker: Worker, job: DecryptJob): Promise<DatasetHeader> {
    return new Promise<DatasetHeader>((resolve, reject) => {
      let inFlight = 0;
      let ackWaiter: (() => void) | undefined;
      let finished = false;
      const reader = job.source.getReader();
      const finish = (error: unknown, header?: DatasetHeader): void => {
        if (finished) return;
        finished = true;
        worker.off('message', onMessage);
        worker.off('error', onError);
        ackWaiter?.();
        if (error === undefined) resolve(header!);
        else {
          void reader.cancel().catch(() => {});
          reject(error);
        }
      };
      const onMessage = (message: ThreadReply): void => {
        if (message.t === 'ack') {
          inFlight--;
          ackWaiter?.();
          ackWaiter = undefined;
        } else if (message.t === 'done') finish(undefined, message.header);
        else finish(new CleanroomError(message.code, 'the dataset did not decrypt'));
      };
      const onError = (error: Error): void => finish(new CleanroomError('INTERNAL', 'a decryption thread failed', { cause: error }));
      worker.on('message', onMessage);
      worker.on('error', onError);
      const post = (message: ThreadRequest, transfer?: ArrayBuffer[]): void => worker.postMessage(message, transfer);
      post({ t: 'start', key: job.key.slice(), expect: job.expect, fd: job.fd });
      void (async () => {
        try {
          for (;;) {
            job.signal?.throwIfAborted();
            while (inFlight >= MAX_IN_FLIGHT && !finished) await new Promise<void>((resolve) => (ackWaiter = resolve));
            if (finished) return;
            const { done, value } = await reader.read();
            if (finished) return;
            if (done) {
              post({ t: 'end' });
              return;
            }
            // Transferred, not copied, when the chunk owns its whole buffer (the local store's reads
            // do); otherwise a tight copy, since a chunk may be a view of a larger shared buffer.
            const bytes = value.byteOffset === 0 && value.byteLength === value.buffer.byteLength && !(value.buffer instanceof SharedArrayBuffer) ? value : value.slice();
            inFlight++;
            post({ t: 'chunk', bytes }, [bytes.buffer as ArrayBuffer]);
          }
        } catch (error) {
          finish(error instanceof CleanroomError ? error : new CleanroomError('INTERNAL', 'the dataset could not be read', { cause: error }));
        }
      })();
    });
  }

  async #take(): Promise<Worker> {
    if (this.#closed) throw new CleanroomError('EXECUTOR_BUSY', 'the worker is shutting down', { retryAfter: 1 });
    const idle = this.#idle.pop();
    if (idle !== undefined) return idle;
    if (this.#all.size < this.#size) {
      const worker = new Worker(new URL('./decrypt-thread.ts', import.meta.url));
      worker.unref();
      this.#all.add(worker);
      return worker;
    }
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  #give(worker: Worker): void {
    const next = this.#waiting.shift();
    if (next !== undefined) next(worker);
    else this.#idle.push(worker);
  }

  #discard(worker: Worker): void {
    this.#all.delete(worker);
    void worker.terminate();
    const next = this.#waiting.shift();
    if (next !== undefined) void this.#take().then(next);
  }
}
