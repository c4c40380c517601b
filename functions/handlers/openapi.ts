import { json } from '../http/responses.ts';
import type { Handler } from '../http/types.ts';
import document from '../../docs/openapi.json' with { type: 'json' };

/** `GET /api/tee/openapi.json`: the API description, kept true by test/functions/openapi.test.ts. */
export const openapi: Handler = async () => json(document, 200, { 'cache-control': 'max-age=300' });

/** `GET /api/tee/health`: liveness for Cloud Run and `npm start`. */
export const health: Handler = async () => json({ status: 'ok' });
