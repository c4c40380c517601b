import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { canonicalResultJson } from '../executor/digest-sink.ts';
import type { QueryResult, ResultRef, ResultSink } from '../executor/ports.ts';

const SAFE = /^[A-Za-z0-9_-]{1,128}$/;

/**
 * The embedded stack's result sink until results are sealed to their recipients (issue 3 of 6):
 * it writes each query's result record ONCE (`wx`, the local twin of `ifGenerationMatch: 0`):
 * row count, size and SHA-256 of the canonical result, never a row. A second write of the same
 * query (a redelivered task) keeps the first record and answers with it, so a query's outcome is
 * recorded exactly once however often its task arrives (DESIGN invariant 10).
 */
export class FileDigestSink implements ResultSink {
  readonly #dir: string;

  constructor(dir: string) {
    this.#dir = dir;
  }

  async write(sessionId: string, queryId: string, result: QueryResult): Promise<ResultRef> {
    if (!SAFE.test(sessionId) || !SAFE.test(queryId)) throw new TypeError('unsafe session or query id');
    const sha256 = createHash('sha256').update(canonicalResultJson(result)).digest('hex');
    const record: ResultRef & { sha256: string } = { ref: `sha256:${sha256}`, rows: result.rows.length, bytes: result.bytes, sha256 };
    const dir = join(this.#dir, sessionId);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const path = join(dir, `${queryId}.json`);
    try {
      writeFileSync(path, JSON.stringify(record), { flag: 'wx', mode: 0o600 });
      return { ref: record.ref, rows: record.rows, bytes: record.bytes };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const first = JSON.parse(readFileSync(path, 'utf8')) as ResultRef;
      return { ref: first.ref, rows: first.rows, bytes: first.bytes };
    }
  }
}
