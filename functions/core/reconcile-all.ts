import type { DataPathService, ShredReport } from './datapath-service.ts';
import type { QueryService, ReconcileReport } from './query-service.ts';

/**
 * One whole reconciler run (docs/architecture.md §9) relative to `now`: queries first, then the closed
 * sessions still to be shredded. One half failing (an outage) does not skip the other: both run,
 * and the first failure is thrown after.
 */
export async function reconcileAll(queries: QueryService, datapath: DataPathService, now?: Date): Promise<ReconcileReport & ShredReport> {
  const q = await settle(() => queries.reconcile(now));
  const s = await settle(() => datapath.reconcile(now));
  if (!q.ok) throw q.error;
  if (!s.ok) throw s.error;
  return { ...q.value, ...s.value };
}

async function settle<T>(run: () => Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  try {
    return { ok: true, value: await run() };
  } catch (error) {
    return { ok: false, error };
  }
}
