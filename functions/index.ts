import { Firestore } from '@google-cloud/firestore';
import { http } from '@google-cloud/functions-framework';
import { GoogleIdTokenVerifier } from './adapters/identity/google-verifier.ts';
import { CloudTasksQueue } from './adapters/queue/cloud-tasks.ts';
import { KmsSigner } from './adapters/signer/kms.ts';
import { FirestoreSessionStore } from './adapters/store/firestore.ts';
import { googleIdTokenSource } from './adapters/worker/google-token.ts';
import { HttpWorkerClient } from './adapters/worker/http-client.ts';
import { loadConfig } from './config.ts';
import { DataPathService } from './core/datapath-service.ts';
import { QueryService } from './core/query-service.ts';
import { SessionService } from './core/session-service.ts';
import { createApi } from './http/app.ts';
import { jsonLogger } from './http/logger.ts';
import { toNodeListener } from '../runtime/node-http.ts';
import { GcsObjectStore, GcsUploadSigner } from '../runtime/object-store/gcs.ts';
import { routesFor } from './routes.ts';
import type { ApiDeps } from './http/types.ts';
import { CleanroomError } from '../protocol/errors.ts';
import type { TaskSigner } from '../protocol/task.ts';

/**
 * The two Cloud Run functions (GCP mode) over Firestore, Cloud Tasks, Cloud KMS, Cloud Storage and
 * Google ID tokens: `api` (every user route) and `internal` (worker events and the reconciler; deploy it
 * with IAM invokers restricted to the worker's and the scheduler's service accounts).
 * Registration must happen at import (the framework finds targets that way); the composition
 * root runs once, on the first request.
 */
let deps: Promise<ApiDeps> | undefined;

/**
 * The KMS signer loads its public key once; until then (and after a failed load, which is retried)
 * a dispatch fails with QUEUE_UNAVAILABLE, the query stays QUEUED and the reconciler enqueues it
 * again. So a KMS outage at cold start never takes the session routes down with it.
 */
function lazySigner(create: () => Promise<TaskSigner>): TaskSigner {
  let loaded: TaskSigner | undefined;
  let loading: Promise<TaskSigner> | undefined;
  const load = (): Promise<TaskSigner> =>
    (loading ??= create().then(
      (signer) => (loaded = signer),
      (error: unknown) => {
        loading = undefined;
        throw error;
      },
    ));
  load().catch(() => {});
  return {
    get kid(): string {
      if (!loaded) {
        load().catch(() => {});
        throw new CleanroomError('QUEUE_UNAVAILABLE', 'the task-signing key is not loaded yet', { retryAfter: 5 });
      }
      return loaded.kid;
    },
    async sign(input: Uint8Array): Promise<Uint8Array> {
      return (loaded ?? (await load())).sign(input);
    },
  };
}

async function build(): Promise<ApiDeps> {
  const config = loadConfig(process.env);
  if (config.mode !== 'gcp') throw new Error('the functions run in gcp mode: set CLEANROOM_MODE=gcp');
  const store = new FirestoreSessionStore(new Firestore({ ...(config.projectId ? { projectId: config.projectId } : {}), databaseId: config.firestoreDatabase }));
  const clock = { now: () => new Date() };
  const log = jsonLogger('api');
  const signer = lazySigner(() => KmsSigner.create({ keyVersionName: config.taskSigningKeyVersion }));
  const queries = new QueryService({
    store,
    clock,
    queue: new CloudTasksQueue({
      queuePath: config.taskQueue,
      url: `${config.teeServiceEndpoint.replace(/\/$/, '')}/tasks`,
      serviceAccountEmail: config.taskServiceAccount,
    }),
    signer,
    newId: () => crypto.randomUUID(),
    onDispatchFailure: (failure) => log.warn('task dispatch failed', { ...failure }),
  });
  // The Cloud Storage and ID-token clients load credentials on first use, never at cold start.
  const datapath = new DataPathService({
    store,
    objects: new GcsObjectStore({ bucket: config.objectStoreBucket }),
    uploads: new GcsUploadSigner({ bucket: config.objectStoreBucket }),
    worker: new HttpWorkerClient({ url: config.teeServiceEndpoint, tokenSource: googleIdTokenSource() }),
    signer,
    clock,
    newId: () => crypto.randomUUID(),
    maxDatasetBytes: config.maxDatasetBytes,
  });
  return {
    sessions: new SessionService({ store, clock, newId: () => crypto.randomUUID() }),
    queries,
    datapath,
    identity: new GoogleIdTokenVerifier({ audiences: config.audiences }),
    log,
    workerEmail: config.workerServiceAccount,
    ...(config.projectId ? { traceProject: config.projectId } : {}),
  };
}

function target(name: 'api' | 'internal') {
  let listener: ReturnType<typeof toNodeListener> | undefined;
  return async (req: Parameters<ReturnType<typeof toNodeListener>>[0], res: Parameters<ReturnType<typeof toNodeListener>>[1]) => {
    deps ??= build();
    listener ??= toNodeListener(createApi(routesFor('gcp', name), await deps));
    return listener(req, res);
  };
}

http('api', target('api'));
http('internal', target('internal'));
