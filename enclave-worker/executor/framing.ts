import { Buffer } from 'node:buffer';

/**
 * Newline-delimited JSON over a pipe, in both directions between the worker and a context.
 * `JSON.stringify` never emits a raw newline, so a newline always ends a frame. The reader bounds
 * how much it buffers, so a context that writes without end is cut off instead of filling the
 * worker's memory.
 */
export class FrameReader {
  readonly #maxFrameBytes: number;
  readonly #onFrame: (text: string) => void;
  readonly #onOverflow: () => void;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #stopped = false;

  /**
   * @param maxFrameBytes longest frame accepted; a longer one calls `onOverflow` once and stops reading.
   * @param onFrame called with each complete frame's text, in order.
   */
  constructor(maxFrameBytes: number, onFrame: (text: string) => void, onOverflow: () => void) {
    this.#maxFrameBytes = maxFrameBytes;
    this.#onFrame = onFrame;
    this.#onOverflow = onOverflow;
  }

  /** Feeds bytes read from the pipe. */
  push(chunk: Buffer): void {
    let rest = chunk;
    while (!this.#stopped) {
      const newline = rest.indexOf(0x0a);
      if (newline === -1) {
        this.#pending.push(rest);
        this.#pendingBytes += rest.length;
        if (this.#pendingBytes > this.#maxFrameBytes) this.#overflow();
        return;
      }
      const head = rest.subarray(0, newline);
      if (this.#pendingBytes + head.length > this.#maxFrameBytes) return this.#overflow();
      const frame = this.#pending.length === 0 ? head : Buffer.concat([...this.#pending, head]);
      this.#pending = [];
      this.#pendingBytes = 0;
      rest = rest.subarray(newline + 1);
      this.#onFrame(frame.toString('utf8'));
    }
  }

  /** Stops delivering frames (the context is being discarded). */
  stop(): void {
    this.#stopped = true;
    this.#pending = [];
  }

  #overflow(): void {
    this.stop();
    this.#onOverflow();
  }
}

/** One frame's bytes: the JSON text and its terminating newline. */
export function encodeFrame(message: unknown): string {
  return `${JSON.stringify(message)}\n`;
}
