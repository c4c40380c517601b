import type { FetchLike } from '../sdk/transport.ts';

/** Where an upload stands. */
export interface ProgressState {
  /** Bytes handed to the connection so far. */
  sent: number;
  /** Bytes expected in all; null when unknown. */
  total: number | null;
  /** Since the upload started. */
  elapsedMs: number;
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** `512 B`, `1.5 KiB`, `12.0 MiB`: binary units, one decimal past bytes. */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${UNITS[unit]}`;
}

/** `0:07`, `12:34`, `1:02:03`. */
function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.ceil(seconds));
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, '0');
  return hours > 0 ? `${hours}:${String(minutes).padStart(2, '0')}:${rest}` : `${minutes}:${rest}`;
}

/** Below this much time or data the rate says nothing yet. */
const MIN_ELAPSED_FOR_RATE_MS = 500;

/**
 * One line for a terminal: bytes sent (of the total), percent, throughput and time left, e.g.
 * `uploading 12.0 MiB / 48.0 MiB  25%  4.0 MiB/s  0:09 left`. Throughput is the average since the
 * start; until half a second has passed it is not shown. A total that was an estimate never shows
 * more than 100%.
 */
export function formatProgress(state: ProgressState): string {
  const parts = [`uploading ${formatBytes(state.sent)}${state.total === null ? '' : ` / ${formatBytes(state.total)}`}`];
  if (state.total !== null && state.total > 0) parts.push(`${Math.min(100, Math.floor((state.sent / state.total) * 100))}%`);
  const rate = state.elapsedMs >= MIN_ELAPSED_FOR_RATE_MS && state.sent > 0 ? state.sent / (state.elapsedMs / 1000) : null;
  if (rate === null) parts.push('--/s');
  else {
    parts.push(`${formatBytes(Math.round(rate))}/s`);
    if (state.total !== null) parts.push(`${formatDuration(Math.max(0, state.total - state.sent) / rate)} left`);
  }
  return parts.join('  ');
}

/** Options of {@link ProgressLine}. */
export interface ProgressLineOptions {
  /** Writes to the terminal (stderr). */
  write: (text: string) => void;
  total: number | null;
  /** Milliseconds; injected in tests. */
  now?: () => number;
  /** Least time between two redraws (default 250 ms: at most four a second). */
  intervalMs?: number;
}

/**
 * A progress line redrawn in place (carriage return, then erase to the end of the line), at most
 * once per `intervalMs`; `done` draws the final state and ends the line. Only for a terminal:
 * the caller decides that (nothing of this goes to a file or a pipe).
 */
export class ProgressLine {
  readonly #write: (text: string) => void;
  readonly #total: number | null;
  readonly #now: () => number;
  readonly #interval: number;
  readonly #started: number;
  #sent = 0;
  #drawnAt = Number.NEGATIVE_INFINITY;
  #finished = false;

  constructor(options: ProgressLineOptions) {
    this.#write = options.write;
    this.#total = options.total;
    this.#now = options.now ?? (() => performance.now());
    this.#interval = options.intervalMs ?? 250;
    this.#started = this.#now();
  }

  /** `bytes` more were sent. */
  add(bytes: number): void {
    this.#sent += bytes;
    const now = this.#now();
    if (this.#finished || now - this.#drawnAt < this.#interval) return;
    this.#drawnAt = now;
    this.#draw(now);
  }

  /** The last redraw and a line break; later calls change nothing. */
  done(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#draw(this.#now());
    this.#write('\n');
  }

  #draw(now: number): void {
    this.#write(`\r${formatProgress({ sent: this.#sent, total: this.#total, elapsedMs: now - this.#started })}\u001b[K`);
  }
}

/**
 * A `fetch` that reports every chunk of a streamed request body to `onBytes` as the connection
 * pulls it, then hands the request to `inner`; requests without a stream body pass unchanged.
 */
export function countingUploads(inner: FetchLike, onBytes: (bytes: number) => void): FetchLike {
  return (input, init) => {
    if (!(init.body instanceof ReadableStream)) return inner(input, init);
    const counted = init.body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          onBytes(chunk.byteLength);
          controller.enqueue(chunk);
        },
      }),
    );
    return inner(input, { ...init, body: counted });
  };
}
