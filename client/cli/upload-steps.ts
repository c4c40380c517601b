import { CSV_DELIMITERS, type CsvDialect } from '../../protocol/csv-dialect.ts';
import { CleanroomError } from '../../protocol/errors.ts';
import type { DatasetFormat } from '../../protocol/dataset.ts';
import { RECORD_PREFIX_BYTES, TAG_BYTES } from '../../protocol/dataset-format/header.ts';
import type { DatasetDescription } from '../sdk/csv-describe.ts';
import type { FetchLike } from '../sdk/transport.ts';
import type { CliContext, Command } from './command.ts';
import { describeCsvFile, describeDialect, type CsvOverrides } from './csv-duckdb.ts';
import { UsageError } from './errors.ts';
import { describeParquet } from './parquet.ts';
import { ProgressLine, countingUploads } from './progress.ts';
import { safe } from './output.ts';

/** The steps of `dataset upload` besides the SDK's: CSV dialect options, the table check, describing, progress. */

/** `--delimiter` and `--header`/`--no-header`, for CSV files. */
export const CSV_UPLOAD_OPTIONS = {
  delimiter: { type: 'string' },
  header: { type: 'boolean' },
} as const;

/** Their `--help` lines. */
export const CSV_UPLOAD_HELP: ReadonlyArray<readonly [string, string]> = [
  ['--delimiter CHAR', 'CSV only: the delimiter, one of , ; | tab (default: what DuckDB finds in the file)'],
  ['--header, --no-header', 'CSV only: whether the first line names the columns (default: what DuckDB finds)'],
];

const DELIMITER_NAMES: Record<string, CsvDialect['delimiter']> = { tab: '\t', '\\t': '\t' };

/** The owner's overrides of the sniffer; a usage error for a Parquet file or a delimiter outside the set. */
export function csvOverrides(command: Pick<Command, 'usage'>, values: { delimiter?: string; header?: boolean }, format: DatasetFormat): CsvOverrides {
  if (format !== 'csv') {
    if (values.delimiter !== undefined || values.header !== undefined) throw new UsageError('--delimiter and --header are for CSV files only', command.usage);
    return {};
  }
  const overrides: CsvOverrides = {};
  if (values.delimiter !== undefined) {
    const delimiter = DELIMITER_NAMES[values.delimiter] ?? values.delimiter;
    if (!(CSV_DELIMITERS as readonly string[]).includes(delimiter)) throw new UsageError('--delimiter must be one of , ; | tab', command.usage);
    overrides.delimiter = delimiter as CsvDialect['delimiter'];
  }
  if (values.header !== undefined) overrides.header = values.header;
  return overrides;
}

/**
 * Refuses a table name the session already has (TABLE_NAME_TAKEN) before anything is read or
 * encrypted: the API would refuse the registration only after the upload. The API still checks.
 */
export async function assertTableFree(ctx: CliContext, sessionId: string, table: string): Promise<void> {
  const taken = (await ctx.api.listDatasets(sessionId)).find((d) => d.table === table);
  if (taken === undefined) return;
  throw new CleanroomError(
    'TABLE_NAME_TAKEN',
    `session ${sessionId} already has a table ${table} (dataset ${safe(taken.id)} of ${safe(taken.owner_email)}): pick another --table; \`cleanroom dataset list ${sessionId}\` shows the names in use`,
  );
}

/**
 * Describes the file with DuckDB on this machine, as the worker will load it: a CSV's dialect,
 * schema and row count (`csv-duckdb.ts`), or a Parquet file's (`parquet.ts`). The SDK hands the
 * file's stream too; it is not needed here (DuckDB reads the path).
 */
export async function describeForUpload(stream: ReadableStream<Uint8Array>, format: DatasetFormat, file: string, overrides: CsvOverrides): Promise<DatasetDescription> {
  await stream.cancel();
  return format === 'csv' ? describeCsvFile(file, overrides) : describeParquet(file);
}

/** A line for stderr when the header row looks like data (every name a number or a date): the sniffer may be wrong. */
export function headerWarning(description: DatasetDescription): string {
  if (description.csv?.header !== true) return '';
  const looksLikeData = description.schema.every((c) => /^[+-]?[0-9][0-9.,:eE+ -]*$/.test(c.name));
  return looksLikeData ? 'warning: the first line looks like data, not column names: if the file has no header row, upload it again with --no-header\n' : '';
}

/** The dialect as one line of the upload's summary. */
export function dialectLine(description: DatasetDescription): string | null {
  return description.csv === undefined ? null : describeDialect(description.csv);
}

/**
 * Upload progress for a terminal: a `fetch` for the upload URL that counts what the connection
 * takes, redrawn on stderr at most four times a second, and `done` to end the line. Without a
 * terminal (or with `--json`) the fetch is `inner` itself and nothing is drawn.
 */
export function uploadProgress(ctx: CliContext, enabled: boolean, plaintextBytes: number, inner: FetchLike): { fetch: FetchLike; done(): void } {
  if (!enabled || !ctx.stderrIsTty) return { fetch: inner, done() {} };
  // The ciphertext is the plaintext plus a header of a few KiB and 28 bytes per 1 MiB record.
  const records = Math.max(1, Math.ceil(plaintextBytes / (1024 * 1024)));
  const line = new ProgressLine({ write: (text) => ctx.io.stderr(text), total: plaintextBytes + records * (RECORD_PREFIX_BYTES + TAG_BYTES) });
  let started = false;
  return {
    fetch: countingUploads(inner, (bytes) => {
      started = true;
      line.add(bytes);
    }),
    done: () => {
      if (started) line.done();
    },
  };
}
