import { parseArgs } from 'node:util';

/** The migration's command line, parsed. */
export interface MigrateArgs {
  dryRun: boolean;
  json: boolean;
  /** The GCP project; otherwise the SDK's own discovery (GOOGLE_CLOUD_PROJECT, credentials). */
  project: string | undefined;
  /** Examine at most this many legacy records. */
  limit: number | undefined;
  /** Read the old SQL table's NDJSON export instead of the `tees` collection. */
  fromNdjson: string | undefined;
  help: boolean;
}

export const USAGE = `Usage: npm run migrate:shared-tee -- [--dry-run] [--json] [--project P] [--limit N] [--from-ndjson FILE]

Moves the legacy \`tees\` collection (or an NDJSON export of the old SQL table) to
\`collaboration_sessions\`. Re-runnable: sessions migrated before are left unchanged.

  --dry-run          read and report only; write nothing
  --json             print the report as JSON
  --project P        the GCP project (FIRESTORE_EMULATOR_HOST selects the emulator)
  --limit N          examine at most N legacy records
  --from-ndjson FILE read legacy records from FILE instead of Firestore

Exit status: 0 done, 1 something failed or the run was interrupted, 2 bad arguments.`;

/** Parses argv (without node and script); throws `TypeError` with a message for the user. */
export function parseMigrateArgs(argv: readonly string[]): MigrateArgs {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        'dry-run': { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        project: { type: 'string' },
        limit: { type: 'string' },
        'from-ndjson': { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (error) {
    throw new TypeError((error as Error).message);
  }
  let limit: number | undefined;
  if (values.limit !== undefined) {
    if (!/^[1-9]\d{0,8}$/.test(values.limit)) throw new TypeError('--limit must be a positive integer');
    limit = Number(values.limit);
  }
  if (values.project !== undefined && !/^([a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$/.test(values.project)) {
    throw new TypeError('--project must be a GCP project id');
  }
  if (values['from-ndjson'] === '') throw new TypeError('--from-ndjson needs a file');
  return {
    dryRun: values['dry-run'],
    json: values.json,
    project: values.project,
    limit,
    fromNdjson: values['from-ndjson'],
    help: values.help,
  };
}
