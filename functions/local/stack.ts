import { mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { DEV_AUDIENCE, DEV_ISSUER, DevIdentityProvider } from '../adapters/identity/dev-idp.ts';
import { JwksIdentityVerifier } from '../adapters/identity/jwks-verifier.ts';
import { SqliteSessionStore } from '../adapters/store/sqlite.ts';
import type { Clock } from '../core/ports.ts';
import { SessionService } from '../core/session-service.ts';
import { createApi } from '../http/app.ts';
import { silentLogger, type Logger } from '../http/logger.ts';
import { toNodeListener } from '../../runtime/node-http.ts';
import { routesFor } from '../routes.ts';

export interface LocalStackOptions {
  /** Everything durable lives here: the SQLite file and the dev identity provider's key. */
  dataDir: string;
  /** 0 picks a free port (tests). */
  apiPort: number;
  apiHost?: string;
  log?: Logger;
  clock?: Clock;
}

export interface LocalStack {
  apiUrl: string;
  devIdp: DevIdentityProvider;
  store: SqliteSessionStore;
  close(): Promise<void>;
}

/** The database file inside the data directory. */
export const DB_FILE = 'cleanroom.sqlite';

/**
 * The embedded stack's composition root: SQLite store, dev identity provider, the API on
 * node:http. The API verifies dev tokens through the same JWKS path as any OIDC issuer.
 */
export async function startLocalStack(options: LocalStackOptions): Promise<LocalStack> {
  mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
  const log = options.log ?? silentLogger;
  const clock = options.clock ?? { now: () => new Date() };
  const store = SqliteSessionStore.open(join(options.dataDir, DB_FILE));
  const devIdp = await DevIdentityProvider.load(options.dataDir, () => clock.now());

  // The verifier needs the server's port, so the server starts first and gets its handler after.
  let handle: (request: Request) => Promise<Response> = async () => new Response('starting', { status: 503 });
  const server = createServer(toNodeListener((request) => handle(request)));
  server.keepAliveTimeout = 5000;
  await listen(server, options.apiPort, options.apiHost ?? '127.0.0.1');
  const { port } = server.address() as AddressInfo;
  const apiUrl = `http://${options.apiHost === '0.0.0.0' ? '127.0.0.1' : (options.apiHost ?? '127.0.0.1')}:${port}`;

  const identity = new JwksIdentityVerifier({
    issuer: DEV_ISSUER,
    audience: DEV_AUDIENCE,
    jwksUrl: new URL('/dev-idp/jwks.json', apiUrl),
  });
  const sessions = new SessionService({ store, clock, newId: () => crypto.randomUUID() });
  handle = createApi(routesFor('local'), { sessions, identity, log, devIdp });

  return {
    apiUrl,
    devIdp,
    store,
    close: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      store.close();
    },
  };
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
