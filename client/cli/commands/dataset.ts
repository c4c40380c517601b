import { extname } from 'node:path';
import * as v from 'valibot';
import { DATASET_FORMATS, TableNameSchema, type DatasetFormat } from '../../../protocol/dataset.ts';
import { uploadDataset } from '../../sdk/dataset-upload.ts';
import type { DatasetViewReceived } from '../../sdk/schemas.ts';
import { fetchSessionKey, type SessionKey } from '../../sdk/session-key.ts';
import { ATTESTATION_HELP, ATTESTATION_OPTIONS, attestationChoice, explainRefusal, insecureWarning } from '../attestation-options.ts';
import { JSON_OPTION, oneOf, parseCommandArgs, required, type Command } from '../command.ts';
import { CliError, UsageError } from '../errors.ts';
import { openFileStream, regularFileSize } from '../files.ts';
import { streamingPut } from '../streaming-put.ts';
import { currentCredentials } from '../identity.ts';
import { nodeAead, nodeSha256 } from '../node-crypto.ts';
import { printJson, safe } from '../output.ts';
import { CSV_UPLOAD_HELP, CSV_UPLOAD_OPTIONS, assertTableFree, csvOverrides, describeForUpload, dialectLine, headerWarning, uploadProgress } from '../upload-steps.ts';

const EXTENSIONS: Record<string, DatasetFormat> = { '.csv': 'csv', '.parquet': 'parquet', '.pq': 'parquet' };

/** `cleanroom dataset upload SESSION FILE --table NAME`. */
export const datasetUpload: Command = {
  path: ['dataset', 'upload'],
  usage: 'cleanroom dataset upload SESSION FILE --table NAME [--format csv|parquet] [--delimiter CHAR] [--[no-]header] [--expect-digest DIGEST ...] [--allow-insecure-dev] [--json]',
  summary: "Encrypt a CSV or Parquet file on this machine to the session's attested worker key and upload it",
  options: [
    ['--table NAME', 'the table name queries use (lowercase letters, digits, _; unique in the session)'],
    ['--format FORMAT', 'csv (any of the dialects below, found by DuckDB) or parquet; default: from the file extension'],
    ...CSV_UPLOAD_HELP,
    ['--rule FILE', 'an analysis rule: NOT SUPPORTED YET (refused; rules are not enforced by this version)'],
    ...ATTESTATION_HELP,
    ['--json', 'print the registered dataset as JSON'],
  ],
  async run(ctx, argv) {
    const { values, positionals } = parseCommandArgs(
      this,
      argv,
      { ...JSON_OPTION, ...ATTESTATION_OPTIONS, ...CSV_UPLOAD_OPTIONS, table: { type: 'string' }, format: { type: 'string' }, rule: { type: 'string' } },
      ['SESSION', 'FILE'],
    );
    const [sessionId, file] = positionals as [string, string];
    if (values.rule !== undefined) {
      // Accepting a rule that nothing enforces would promise a protection that is not there.
      throw new UsageError('--rule is not supported yet: analysis rules are not enforced by this version, so none is accepted', this.usage);
    }
    const table = required(this, values.table, '--table');
    const checkedTable = v.safeParse(TableNameSchema, table);
    if (!checkedTable.success) throw new UsageError(`--table: ${checkedTable.issues[0].message}`, this.usage);
    const format = oneOf(this, values.format, DATASET_FORMATS, '--format') ?? formatOf(this, file);
    const overrides = csvOverrides(this, values, format);
    const choice = attestationChoice(this, ctx, values);
    const plaintextBytes = await regularFileSize(file);
    const credentials = await currentCredentials({ api: ctx.config.api, home: ctx.config.home, fetch: ctx.fetch, now: ctx.now });
    if (credentials.email === null) throw new CliError('NOT_LOGGED_IN', 'the stored token names no email: run `cleanroom login` again');
    // The API takes data only from participants with registered keys: say how, before any work.
    const session = await ctx.api.getSession(sessionId);
    if (session.participants.find((p) => p.email === credentials.email)?.keys == null) {
      throw new CliError('KEYS_NOT_FOUND', `you have no keys registered in session ${sessionId}: run \`cleanroom session join ${sessionId}\` first`);
    }
    await assertTableFree(ctx, sessionId, table);

    // The worker is attested before a byte of the file is read (docs/architecture.md invariant 1).
    let sessionKey: SessionKey;
    try {
      sessionKey = await fetchSessionKey({ api: ctx.api, sessionId, attestation: choice, fetch: ctx.fetch, currentDate: ctx.now() });
    } catch (error) {
      throw explainRefusal(error, choice);
    }
    if (sessionKey.insecureDev) ctx.io.stderr(insecureWarning(sessionKey.digestPinned));
    if (!values.json) ctx.io.stderr(`session key ${sessionKey.thumbprint} verified (epoch ${sessionKey.epoch}); encrypting ${file}\n`);

    const progress = uploadProgress(ctx, !values.json, plaintextBytes, streamingPut(ctx.fetch));
    const { dataset, description } = await uploadDataset({
      api: ctx.api,
      sessionId,
      table,
      format,
      openFile: () => openFileStream(file),
      // DuckDB describes the file as the worker will load it (a CSV's dialect included).
      describe: async (stream: ReadableStream<Uint8Array>) => {
        const described = await describeForUpload(stream, format, file, overrides);
        if (!values.json) ctx.io.stderr(headerWarning(described));
        return described;
      },
      sessionKey,
      ownerEmail: credentials.email,
      aead: nodeAead,
      hasher: nodeSha256,
      // The ciphertext streams at the socket's pace (bounded memory, whatever the file's size).
      fetch: progress.fetch,
      uploadBody: 'stream',
    }).finally(() => progress.done());
    if (values.json) {
      printJson(ctx.io, dataset);
      return;
    }
    const rows: Array<[string, string]> = [
      ['dataset', dataset.id],
      ['table', dataset.table],
      ['format', dialectLine(description) === null ? dataset.format : `${dataset.format} (${dialectLine(description)})`],
      ['rows', String(dataset.row_count)],
      ['columns', dataset.schema.map((c) => `${c.name} ${c.type}`).join(', ')],
      ['plaintext', `${description.bytes} bytes (never left this machine)`],
      ['ciphertext', `${dataset.ciphertext_bytes} bytes`],
      ['sha256', dataset.ciphertext_sha256],
      ['session key', dataset.session_key_thumbprint],
    ];
    ctx.io.stdout(labelled(rows));
  },
};

/** `cleanroom dataset list SESSION`. */
export const datasetList: Command = {
  path: ['dataset', 'list'],
  usage: 'cleanroom dataset list SESSION [--json]',
  summary: "List a session's datasets (public metadata: table, owner, schema, rows, sizes)",
  options: [['--json', 'print {datasets: [...]} as JSON']],
  async run(ctx, argv) {
    const { values, positionals } = parseCommandArgs(this, argv, { ...JSON_OPTION }, ['SESSION']);
    const datasets = await ctx.api.listDatasets(positionals[0]!);
    if (values.json) printJson(ctx.io, { datasets });
    else ctx.io.stdout(formatDatasetTable(datasets));
  },
};

function formatOf(command: Pick<Command, 'usage'>, file: string): DatasetFormat {
  const format = EXTENSIONS[extname(file).toLowerCase()];
  if (format === undefined) throw new UsageError(`cannot tell the format of ${file} from its extension: pass --format csv or --format parquet`, command.usage);
  return format;
}

/** Datasets as a table, one per line. */
export function formatDatasetTable(datasets: readonly DatasetViewReceived[]): string {
  if (datasets.length === 0) return 'no datasets\n';
  const rows = [
    ['ID', 'TABLE', 'OWNER', 'ROWS', 'BYTES', 'CREATED', 'COLUMNS'],
    ...datasets.map((d) => [d.id, d.table, d.owner_email, String(d.row_count), String(d.ciphertext_bytes), d.created_at, d.schema.map((c) => `${c.name} ${c.type}`).join(', ')].map(safe)),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return `${rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n')}\n`;
}

function labelled(rows: Array<[string, string]>): string {
  return `${rows.map(([label, value]) => `${label.padEnd(19)}${safe(value)}`).join('\n')}\n`;
}
