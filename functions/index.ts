import { Firestore } from '@google-cloud/firestore';
import { http } from '@google-cloud/functions-framework';
import { GoogleIdTokenVerifier } from './adapters/identity/google-verifier.ts';
import { FirestoreSessionStore } from './adapters/store/firestore.ts';
import { loadConfig } from './config.ts';
import { SessionService } from './core/session-service.ts';
import { createApi } from './http/app.ts';
import { jsonLogger } from './http/logger.ts';
import { toNodeListener } from '../runtime/node-http.ts';
import { routesFor } from './routes.ts';

/**
 * The `api` Cloud Run function (GCP mode): the route table over Firestore and Google ID tokens.
 * Registration must happen at import (the framework finds targets that way); the composition
 * root runs on the first request, once.
 */
let listener: ReturnType<typeof toNodeListener> | undefined;

function build(): ReturnType<typeof toNodeListener> {
  const config = loadConfig(process.env);
  if (config.mode !== 'gcp') throw new Error('the api function runs in gcp mode: set CLEANROOM_MODE=gcp');
  const db = new Firestore({
    ...(config.projectId ? { projectId: config.projectId } : {}),
    databaseId: config.firestoreDatabase,
  });
  const sessions = new SessionService({
    store: new FirestoreSessionStore(db),
    clock: { now: () => new Date() },
    newId: () => crypto.randomUUID(),
  });
  const identity = new GoogleIdTokenVerifier({ audiences: config.audiences });
  return toNodeListener(createApi(routesFor('gcp'), { sessions, identity, log: jsonLogger() }));
}

http('api', (req, res) => {
  listener ??= build();
  return listener(req, res);
});
