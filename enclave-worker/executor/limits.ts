import * as v from 'valibot';

/**
 * Per-query limits. They are fixed per executor: memory and threads are set when a child's DuckDB
 * is created and the configuration is locked right after, before any query text arrives.
 */
export const ExecutorLimitsSchema = v.strictObject({
  /** Wall-clock budget from the moment a query gets its context; the context is SIGKILLed at the end. */
  timeoutMs: v.pipe(v.number(), v.integer(), v.minValue(100), v.maxValue(3_600_000)),
  /** DuckDB `memory_limit` in MiB (its buffer manager; spilling is off, so this is a hard cap there). */
  memoryLimitMb: v.pipe(v.number(), v.integer(), v.minValue(16), v.maxValue(1_048_576)),
  /** DuckDB `threads` for one query. */
  threads: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(256)),
  /** V8 old-space cap of the child (`--max-old-space-size`), in MiB: bounds result conversion. */
  heapMb: v.pipe(v.number(), v.integer(), v.minValue(32), v.maxValue(65_536)),
  /**
   * Resident set cap of the whole child in MiB, checked by a watchdog in the parent. DuckDB's own
   * limit does not cover every allocation (long strings, for one), so this is the backstop.
   */
  rssLimitMb: v.pipe(v.number(), v.integer(), v.minValue(64), v.maxValue(1_048_576)),
  /** Result rows; a larger result fails with RESULT_TOO_LARGE (never silently truncated). */
  maxRows: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(100_000_000)),
  /** Result size in bytes of its JSON row encoding; larger fails with RESULT_TOO_LARGE. */
  maxBytes: v.pipe(v.number(), v.integer(), v.minValue(1024), v.maxValue(4_294_967_296)),
});
export type ExecutorLimits = v.InferOutput<typeof ExecutorLimitsSchema>;

/** Defaults sized for a small worker (2 vCPU): generous for clean-room aggregates, small for bombs. */
export const DEFAULT_LIMITS: ExecutorLimits = {
  timeoutMs: 30_000,
  memoryLimitMb: 512,
  threads: 1,
  heapMb: 256,
  rssLimitMb: 1024,
  maxRows: 100_000,
  maxBytes: 64 * 1024 * 1024,
};

/** Resident memory of an idle context (Node, DuckDB loaded, database created), with a margin. */
const CONTEXT_BASELINE_MB = 256;

/**
 * `DEFAULT_LIMITS` with `overrides`, validated; a bad value is a bug in the caller (TypeError).
 * Unless given, `rssLimitMb` grows with the other two budgets, so the watchdog never cuts a query
 * short of its own DuckDB and heap limits.
 */
export function resolveLimits(overrides: Partial<ExecutorLimits> = {}): ExecutorLimits {
  const merged = { ...DEFAULT_LIMITS, ...overrides };
  if (overrides.rssLimitMb === undefined) {
    merged.rssLimitMb = Math.max(DEFAULT_LIMITS.rssLimitMb, merged.memoryLimitMb + merged.heapMb + CONTEXT_BASELINE_MB);
  }
  const result = v.safeParse(ExecutorLimitsSchema, merged);
  if (!result.success) {
    const issue = result.issues[0]!;
    throw new TypeError(`executor limits: ${issue.path?.map((p) => String(p.key)).join('.') ?? ''}: ${issue.message}`);
  }
  return result.output;
}
