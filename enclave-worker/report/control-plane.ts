import type { QueryEvent } from '../../protocol/query.ts';

export interface ReporterOptions {
  /** The control plane's base URL; events go to its internal target. */
  baseUrl: string;
  /** A bearer ID token of the worker's identity (dev IdP locally, metadata server in GCP). */
  tokenSource: () => Promise<string>;
  fetch?: typeof fetch;
  timeoutMs?: number;
  attempts?: number;
  log?: (message: string, fields: Record<string, unknown>) => void;
}

/** `ok`: recorded (or already was); `refused`: a 4xx, e.g. the query may not run; `unreachable`: every attempt failed. */
export type ReportResult = 'ok' | 'refused' | 'unreachable';

/**
 * Tells the control plane what happened to a query (`POST /internal/v1/queries/:id/events`).
 * Events carry codes and counts only. Retries with back-off (the reconciler on the control plane
 * notices a query stuck in RUNNING when every attempt failed).
 */
export function controlPlaneReporter(options: ReporterOptions) {
  const doFetch = options.fetch ?? fetch;
  const attempts = options.attempts ?? 4;
  return {
    async report(event: QueryEvent): Promise<ReportResult> {
      const url = `${options.baseUrl}/internal/v1/queries/${encodeURIComponent(event.query_id)}/events`;
      for (let attempt = 1; attempt <= attempts; attempt++) {
        try {
          const res = await doFetch(url, {
            method: 'POST',
            headers: { 'content-type': 'application/json', authorization: `Bearer ${await options.tokenSource()}` },
            body: JSON.stringify(event),
            signal: AbortSignal.timeout(options.timeoutMs ?? 5000),
          });
          await res.body?.cancel();
          // 4xx other than 429 will not change on retry: the control plane refused the event.
          if (res.ok || (res.status >= 400 && res.status < 500 && res.status !== 429)) {
            if (!res.ok) options.log?.('event refused by control plane', { status: res.status, event: event.event });
            return res.ok ? 'ok' : 'refused';
          }
        } catch {}
        await new Promise((r) => setTimeout(r, 100 * 2 ** attempt));
      }
      options.log?.('event not delivered', { event: event.event, query_id: event.query_id });
      return 'unreachable';
    },
  };
}
export type Reporter = ReturnType<typeof controlPlaneReporter>;
