import type { Principal, IdentityVerifier } from '../core/ports.ts';
import type { SessionService } from '../core/session-service.ts';
import type { DevIdentityProvider } from '../adapters/identity/dev-idp.ts';
import type { Logger } from './logger.ts';

/** What handlers may use; built once by a composition root. */
export interface ApiDeps {
  sessions: SessionService;
  identity: IdentityVerifier;
  log: Logger;
  /** Present only in local mode. WARNING: it authenticates nobody. */
  devIdp?: DevIdentityProvider;
}

export interface HandlerContext {
  request: Request;
  url: URL;
  params: Record<string, string>;
  /** The verified caller; set for every route whose auth is `user`. */
  principal: Principal;
  deps: ApiDeps;
}

export type Handler = (ctx: HandlerContext) => Promise<Response>;

export type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

/**
 * One row of the route table. `auth: 'user'` needs a verified bearer ID token; `public` routes
 * serve only non-sensitive documents (OpenAPI, dev identity provider, legacy pointers).
 */
export interface Route {
  method: Method;
  path: string;
  auth: 'user' | 'public';
  /** Only mounted in the embedded stack. */
  localOnly?: boolean;
  summary: string;
  handler: Handler;
}
