/**
 * The retry schedule of a queue, with Cloud Tasks' names and meaning (a queue's `retryConfig`),
 * so the local twin and the deployed queue are configured the same way.
 */
export interface RetryConfig {
  /** Delay before the first retry. */
  minBackoffMs: number;
  /** No delay is longer than this. */
  maxBackoffMs: number;
  /** How many times the delay doubles before it grows linearly. */
  maxDoublings: number;
  /** Dispatches in total before the task is given up; -1 for unlimited. */
  maxAttempts: number;
  /** Fraction (0..1) by which a delay is randomly shortened, so retries of many tasks spread out. */
  jitter: number;
}

/** Cloud Tasks' defaults for a queue created without a retry config. */
export const DEFAULT_RETRY: RetryConfig = {
  minBackoffMs: 100,
  maxBackoffMs: 3_600_000,
  maxDoublings: 16,
  maxAttempts: 100,
  jitter: 0,
};

/**
 * The delay before retry number `retryIndex` (0 for the first retry), as Cloud Tasks computes
 * it: `minBackoff` doubles `maxDoublings` times, then grows by that last interval each retry, and
 * is capped at `maxBackoff` (10 s, 20 s, 40 s, 80 s, 160 s, 240 s, 300 s, 300 s for 10 s / 300 s / 3).
 */
export function backoffDelayMs(retryIndex: number, config: RetryConfig, random: () => number = Math.random): number {
  const doublings = Math.min(retryIndex, config.maxDoublings);
  const doubled = config.minBackoffMs * 2 ** doublings;
  const linear = retryIndex > config.maxDoublings ? doubled * (retryIndex - config.maxDoublings + 1) : doubled;
  const capped = Math.min(linear, config.maxBackoffMs);
  return Math.round(capped * (1 - config.jitter * random()));
}

/** The longest `Retry-After` honoured; a larger one is treated as a misbehaving worker. */
const MAX_RETRY_AFTER_MS = 3_600_000;

/**
 * Milliseconds a `Retry-After` header asks to wait (delta-seconds or an HTTP date), or null when
 * it is absent or unreadable.
 */
export function retryAfterMs(header: string | null, nowMs: number): number | null {
  if (header === null) return null;
  const trimmed = header.trim();
  let delay: number;
  if (/^\d+$/.test(trimmed)) delay = Number(trimmed) * 1000;
  else {
    // Only an HTTP-date (it names a weekday or month); Date.parse would read "-5" as a year.
    if (!/[A-Za-z]{3}/.test(trimmed)) return null;
    const at = Date.parse(trimmed);
    if (Number.isNaN(at)) return null;
    delay = at - nowMs;
  }
  return Math.min(Math.max(delay, 0), MAX_RETRY_AFTER_MS);
}
