/**
 * Entry point of one execution context: a child process that serves exactly one query and exits.
 * Started by `context.ts` (never imported). It speaks newline-delimited JSON frames on stdin and
 * stdout (`messages.ts`) and writes nothing else anywhere: stderr is discarded by the parent, and no
 * DuckDB message ever leaves this process, only a fixed code.
 */
import process from 'node:process';
import type { DuckDBConnection } from '@duckdb/node-api';
import { failureCode, openLockedDatabase, runSelect, serializeSql } from './engine.ts';
import { encodeFrame, FrameReader } from './framing.ts';
import { loadFiles, warmUp } from './load-files.ts';
import type { ChildFrame, ParentFrame } from './messages.ts';

/** Largest frame the parent may send (a JSON string cannot be longer anyway). */
const MAX_PARENT_FRAME_BYTES = 512 * 1024 * 1024;

let connection: DuckDBConnection | undefined;
let directory: string | undefined;
let sql: string | undefined;
let running = false;
let busy = Promise.resolve();

function send(frame: ChildFrame): void {
  process.stdout.write(encodeFrame(frame));
}

/** Reports a fixed code and ends the context; it is never reused after a failure. */
function fail(error: unknown): never {
  send({ t: 'failed', code: failureCode(error) });
  process.exit(0);
}

async function handle(frame: ParentFrame): Promise<void> {
  if (frame.t === 'init') {
    if (connection !== undefined) throw new TypeError('init twice');
    directory = frame.directory;
    connection = await openLockedDatabase({ threads: frame.threads, memoryLimitMb: frame.memoryLimitMb, directory });
    await warmUp(connection, directory);
    send({ t: 'ready' });
  } else if (frame.t === 'parse') {
    if (connection === undefined || sql !== undefined) throw new TypeError('parse out of order');
    sql = frame.sql;
    // Parsed before any table exists in this database: a parser exploit finds nothing to read.
    send({ t: 'parsed', tree: await serializeSql(connection, sql) });
  } else if (frame.t === 'load') {
    // Several load frames may come (one per input, as the worker finishes writing each); none after run.
    if (connection === undefined || sql === undefined || running) throw new TypeError('load out of order');
    // Only SQL of ours reads the files; the user's SQL runs after the worker has deleted them.
    await loadFiles(connection, directory!, frame.inputs);
    send({ t: 'loaded' });
  } else if (frame.t === 'run') {
    if (connection === undefined || sql === undefined) throw new TypeError('run out of order');
    running = true;
    const result = await runSelect(connection, sql, { maxRows: frame.maxRows, maxBytes: frame.maxBytes });
    send({ t: 'result', columns: result.columns, rows: result.rows, bytes: result.bytes });
    process.exit(0);
  } else {
    throw new TypeError('unknown frame');
  }
}

const reader = new FrameReader(
  MAX_PARENT_FRAME_BYTES,
  (text) => {
    // One frame at a time, in order; any error ends the context with its fixed code. The parent is
    // trusted and builds frames from validated data, so they are not validated again here: that
    // keeps valibot out of every context's start-up.
    busy = busy.then(() => handle(JSON.parse(text) as ParentFrame)).catch(fail);
  },
  () => fail(new TypeError('parent frame too large')),
);
process.stdin.on('data', (chunk: Buffer) => reader.push(chunk));
// The worker went away (or discarded this context): nothing left to serve.
process.stdin.on('end', () => process.exit(0));
process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);
