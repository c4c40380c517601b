import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { Firestore } from '@google-cloud/firestore';
import { DEFAULT_SESSIONS_COLLECTION, FirestoreSessionStore } from '../adapters/store/firestore.ts';
import { parseMigrateArgs, USAGE, type MigrateArgs } from './args.ts';
import { firestoreSource } from './firestore-source.ts';
import { LEGACY_COLLECTION } from './map.ts';
import { ndjsonSource } from './ndjson.ts';
import { formatReport } from './report.ts';
import { runMigration } from './run.ts';

/**
 * Composition root of `npm run migrate:shared-tee`: parses the command line, builds the Firestore
 * client (which honours FIRESTORE_EMULATOR_HOST), runs the migration and prints its report.
 * Returns the exit status.
 */
async function main(argv: readonly string[]): Promise<number> {
  let args: MigrateArgs;
  try {
    args = parseMigrateArgs(argv);
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }

  const db = new Firestore(args.project === undefined ? {} : { projectId: args.project });
  // The first Ctrl-C stops between two steps, so the report still says how far the run got.
  const controller = new AbortController();
  const onSignal = (): void => controller.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const source = args.fromNdjson
      ? ndjsonSource(createInterface({ input: createReadStream(args.fromNdjson), crlfDelay: Infinity }), args.fromNdjson)
      : firestoreSource(db, { collection: LEGACY_COLLECTION });
    const report = await runMigration({
      source,
      store: new FirestoreSessionStore(db, { collection: DEFAULT_SESSIONS_COLLECTION }),
      db,
      targetCollection: DEFAULT_SESSIONS_COLLECTION,
      clock: { now: () => new Date() },
      dryRun: args.dryRun,
      limit: args.limit,
      signal: controller.signal,
      log: (line) => process.stderr.write(`${line}\n`),
    });
    process.stdout.write(args.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatReport(report)}\n`);
    return report.counts.failed > 0 || report.interrupted ? 1 : 0;
  } catch (error) {
    // A failure outside one record (the source unreadable, Firestore unreachable): nothing more to do.
    process.stderr.write(`migration stopped: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await db.terminate();
  }
}

process.exitCode = await main(process.argv.slice(2));
