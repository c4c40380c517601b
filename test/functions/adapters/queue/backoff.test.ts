import test from 'ava';
import { DEFAULT_RETRY, backoffDelayMs, retryAfterMs } from '../../../../functions/adapters/queue/backoff.ts';

test('backoff: doubles maxDoublings times, then grows linearly, capped at maxBackoff (Cloud Tasks example)', (t) => {
  const config = { ...DEFAULT_RETRY, minBackoffMs: 10_000, maxBackoffMs: 300_000, maxDoublings: 3 };
  const delays = Array.from({ length: 8 }, (_, i) => backoffDelayMs(i, config));
  t.deepEqual(delays, [10_000, 20_000, 40_000, 80_000, 160_000, 240_000, 300_000, 300_000]);
});

test('backoff: jitter only shortens, by at most its fraction', (t) => {
  const config = { ...DEFAULT_RETRY, minBackoffMs: 1000, maxDoublings: 5, jitter: 0.5 };
  t.is(
    backoffDelayMs(2, config, () => 0),
    4000,
  );
  t.is(
    backoffDelayMs(2, config, () => 0.999999),
    2000,
  );
});

test('retryAfterMs: delta-seconds, HTTP dates, absent and junk', (t) => {
  const now = Date.parse('2030-01-01T00:00:00Z');
  t.is(retryAfterMs('30', now), 30_000);
  t.is(retryAfterMs(' 0 ', now), 0);
  t.is(retryAfterMs('Tue, 01 Jan 2030 00:00:45 GMT', now), 45_000);
  t.is(retryAfterMs('Mon, 31 Dec 2029 00:00:00 GMT', now), 0);
  t.is(retryAfterMs(null, now), null);
  t.is(retryAfterMs('soon', now), null);
  t.is(retryAfterMs('-5', now), null);
  t.is(retryAfterMs('99999999', now), 3_600_000);
});
