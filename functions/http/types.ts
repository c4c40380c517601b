import type { ObjectStore as WritableObjectStore } from '../../runtime/object-store/port.ts';
import type { DataPathService } from '../core/datapath-service.ts';
import type { Principal, IdentityVerifier } from '../core/ports.ts';
import type { QueryService } from '../core/query-service.ts';
import type { SessionService } from '../core/session-service.ts';
import type { DevIdentityProvider } from '../adapters/identity/dev-idp.ts';
import type { Logger } from './logger.ts';

/** What handlers may use; built once by a composition root. */
export interface ApiDeps {
  sessions: SessionService;
  /**
   * The query lifecycle. Optional only until every composition root builds it: a query route
   * called without it is a bug of the deployable (500), never a silent success.
   */
  queries?: QueryService;
  /**
   * Datasets, session key relay, sealed results and shredding. Optional as `queries` is: a data
   * route called without it is a bug of the deployable (500).
   */
  datapath?: DataPathService;
  /**
   * Present only in local mode: where `PUT /objects/...` writes and the secret its signed URLs
   * are checked with (the local twin of Cloud Storage's signed URLs).
   */
  localUploads?: { store: WritableObjectStore; secret: Uint8Array; now?: () => Date };
  identity: IdentityVerifier;
  /**
   * The worker's identity (its service account's email, lowercased): the only caller `worker`
   * routes accept. Without it they refuse everyone (403).
   */
  workerEmail?: string;
  log: Logger;
  /** The GCP project whose Cloud Trace the request log lines link to (GCP mode). */
  traceProject?: string;
  /** Present only in local mode. WARNING: it authenticates nobody. */
  devIdp?: DevIdentityProvider;
}

export interface HandlerContext {
  request: Request;
  url: URL;
  params: Record<string, string>;
  /** The verified caller; set for every route whose auth is `user` or `worker`. */
  principal: Principal;
  deps: ApiDeps;
}

export type Handler = (ctx: HandlerContext) => Promise<Response>;

export type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

/**
 * One row of the route table. `auth: 'user'` needs a verified bearer ID token; `worker` needs
 * one whose email is the configured worker's (the `internal` target: status reports and the
 * reconciler); `public` routes serve only non-sensitive documents (OpenAPI, dev identity
 * provider, legacy pointers).
 */
export interface Route {
  method: Method;
  path: string;
  auth: 'user' | 'worker' | 'public';
  /** Only mounted in the embedded stack. */
  localOnly?: boolean;
  summary: string;
  handler: Handler;
}
