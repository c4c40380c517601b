import * as v from 'valibot';

/**
 * How a CSV dataset is written: its delimiter, quote and escape characters and whether its first
 * line names the columns. The owner's client finds it (the CLI with DuckDB's sniffer) and records
 * it in the registration and in the authenticated header of the encrypted file (docs/architecture.md
 * §7); the worker loads the file with exactly these options and nothing sniffed. Every value is
 * from a closed set, so the options text below can never carry anything else.
 */

/** Delimiters a dataset may declare: comma, semicolon, tab, pipe. */
export const CSV_DELIMITERS = [',', ';', '\t', '|'] as const;
/** Quote characters. */
export const CSV_QUOTES = ['"', "'"] as const;
/** Escape characters inside a quoted field (the quote itself: RFC 4180 doubling). */
export const CSV_ESCAPES = ['"', "'", '\\'] as const;

export const CsvDialectSchema = v.pipe(
  v.strictObject({
    delimiter: v.picklist(CSV_DELIMITERS, 'delimiter must be one of , ; tab |'),
    quote: v.picklist(CSV_QUOTES, 'quote must be " or \''),
    escape: v.picklist(CSV_ESCAPES, 'escape must be " \' or \\'),
    /** True when the first line holds the column names (and is not a row). */
    header: v.boolean('header must be true or false'),
  }),
  v.check((d) => (d.delimiter as string) !== d.quote && (d.delimiter as string) !== d.escape, 'the delimiter must differ from the quote and escape characters'),
);
export type CsvDialect = v.InferOutput<typeof CsvDialectSchema>;

/**
 * RFC 4180 with a header row: what a registration or header without a dialect means (datasets
 * registered before dialects were recorded, and the browser SDK's own CSV reader).
 */
export const RFC4180_DIALECT: CsvDialect = Object.freeze({ delimiter: ',', quote: '"', escape: '"', header: true });

/** True when `a` and `b` read a file the same way; absent means {@link RFC4180_DIALECT}. */
export function sameCsvDialect(a: CsvDialect | undefined, b: CsvDialect | undefined): boolean {
  const x = a ?? RFC4180_DIALECT;
  const y = b ?? RFC4180_DIALECT;
  return x.delimiter === y.delimiter && x.quote === y.quote && x.escape === y.escape && x.header === y.header;
}

/** A character as a DuckDB string literal (quotes doubled; the sets above hold nothing else to escape). */
function literal(char: string): string {
  return `'${char.replaceAll("'", "''")}'`;
}

/**
 * The `read_csv` options of a strict load under `dialect`: every option fixed and nothing
 * detected (`auto_detect = false`), a row with another number of cells or a cell that does not
 * parse as its column's type fails, an empty unquoted cell is NULL and a quoted empty one `""` an
 * empty string, no compression. The worker's loader and the CLI's describer use exactly this text,
 * so what the owner's machine counted and typed is what the worker reads. Add `columns` yourself.
 */
export function duckdbCsvOptions(dialect: CsvDialect): string {
  const d = v.parse(CsvDialectSchema, dialect);
  return [
    `delim = ${literal(d.delimiter)}`,
    `quote = ${literal(d.quote)}`,
    `escape = ${literal(d.escape)}`,
    `header = ${d.header ? 'true' : 'false'}`,
    'auto_detect = false',
    'strict_mode = true',
    'ignore_errors = false',
    'null_padding = false',
    'allow_quoted_nulls = false',
    "compression = 'none'",
  ].join(', ');
}
