/**
 * A token bucket per key (the caller's address): `/attestation` asks the TEE for a fresh token on
 * every call, so it is rate-limited (docs/architecture.md §5). Buckets are dropped when full again.
 */
export function tokenBuckets(options: { capacity: number; refillPerSecond: number; now?: () => number; maxKeys?: number }) {
  const now = options.now ?? (() => performance.now());
  const buckets = new Map<string, { tokens: number; at: number }>();
  const maxKeys = options.maxKeys ?? 10_000;
  return {
    /** True when `key` may proceed now; false when it must wait. */
    take(key: string): boolean {
      const t = now();
      const b = buckets.get(key) ?? { tokens: options.capacity, at: t };
      b.tokens = Math.min(options.capacity, b.tokens + ((t - b.at) / 1000) * options.refillPerSecond);
      b.at = t;
      if (b.tokens < 1) {
        buckets.set(key, b);
        return false;
      }
      b.tokens -= 1;
      if (buckets.size >= maxKeys && !buckets.has(key)) buckets.clear();
      buckets.set(key, b);
      return true;
    },
  };
}
