import { json } from '../http/responses.ts';
import type { Handler } from '../http/types.ts';
import { reconcileAll } from '../core/reconcile-all.ts';
import { datapathService } from './datapath.ts';
import { queryService } from './query-id.ts';

/**
 * `POST /internal/v1/reconcile` (worker identity; Cloud Scheduler each minute in GCP, a timer
 * locally): one reconciler run over queries, then over closed sessions still to be shredded.
 * Answers the counts of what it did; no body is read.
 */
export const reconcile: Handler = async ({ deps }) => json(await reconcileAll(queryService(deps), datapathService(deps)));
