import * as v from 'valibot';
import { DatasetSchemaSchema, type DatasetColumnType, type DatasetSchema } from '../../protocol/dataset.ts';
import { CleanroomError } from '../../protocol/errors.ts';

/** What a plaintext dataset file holds, as its owner registers it (public metadata). */
export interface DatasetDescription {
  schema: DatasetSchema;
  /** Data rows (the header row not counted). */
  rowCount: number;
  /** Plaintext size in bytes. */
  bytes: number;
}

// One bit per type a value fits; a column's type is the narrowest one every non-null value fits.
const BOOLEAN = 1;
const INTEGER = 2;
const BIGINT = 4;
const DOUBLE = 8;
const DATE = 16;
const TIMESTAMP = 32;
const ANY = BOOLEAN | INTEGER | BIGINT | DOUBLE | DATE | TIMESTAMP;
const NARROWEST_FIRST: ReadonlyArray<readonly [number, DatasetColumnType]> = [
  [BOOLEAN, 'BOOLEAN'],
  [INTEGER, 'INTEGER'],
  [BIGINT, 'BIGINT'],
  [DOUBLE, 'DOUBLE'],
  [DATE, 'DATE'],
  [TIMESTAMP, 'TIMESTAMP'],
];

// A leading zero (`007`) makes a value text: as a number it would not read back the same.
const INT = /^[+-]?(0|[1-9][0-9]*)$/;
const FLOAT = /^[+-]?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]{1,3})?$/;
const DATE_RE = /^([0-9]{4})-([0-9]{2})-([0-9]{2})$/;
const TIMESTAMP_RE = /^([0-9]{4})-([0-9]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,6})?$/;
const INT32_MIN = -(2n ** 31n);
const INT32_MAX = 2n ** 31n - 1n;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** The types one non-empty CSV value fits, as bits. */
function fits(value: string): number {
  const first = value.charCodeAt(0);
  // Most values are plainly text; skip the patterns for them.
  const numeric = (first >= 48 && first <= 57) || first === 43 || first === 45;
  if (!numeric) return value.length <= 5 && /^(true|false)$/i.test(value) ? BOOLEAN : 0;
  if (INT.test(value)) {
    const digits = value.length - (first === 43 || first === 45 ? 1 : 0);
    if (digits <= 9) return INTEGER | BIGINT | DOUBLE;
    if (digits > 19) return DOUBLE;
    const n = BigInt(value);
    if (n >= INT32_MIN && n <= INT32_MAX) return INTEGER | BIGINT | DOUBLE;
    return n >= INT64_MIN && n <= INT64_MAX ? BIGINT | DOUBLE : DOUBLE;
  }
  if (FLOAT.test(value)) return Number.isFinite(Number(value)) ? DOUBLE : 0;
  if (value.length === 10) {
    const m = DATE_RE.exec(value);
    return m !== null && validDate(m) ? DATE | TIMESTAMP : 0;
  }
  const m = TIMESTAMP_RE.exec(value);
  if (m === null || !validDate(m)) return 0;
  return Number(m[4]) <= 23 && Number(m[5]) <= 59 && Number(m[6]) <= 59 ? TIMESTAMP : 0;
}

function validDate(m: RegExpExecArray): boolean {
  const year = Number(m[1]);
  const month = Number(m[2]);
  const day = Number(m[3]);
  if (year < 1 || month < 1 || month > 12 || day < 1) return false;
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]!;
  return day <= days;
}

const COMMA = 44;
const QUOTE = 34;
const LF = 10;
const CR = 13;

/** Where the scanner is inside the text. */
type State = 'start' | 'unquoted' | 'quoted' | 'quote' | 'cr';

/**
 * An RFC 4180 scanner (comma, double quotes, CRLF or LF) fed decoded text chunk by chunk; hands
 * each record to `onRecord` with the line it began on. Only the current record is held.
 */
class CsvScanner {
  #state: State = 'start';
  #field = '';
  #quoted = false;
  #record: string[] = [];
  #line = 1;
  #recordLine = 1;
  /** Per field of the current record: was it quoted (`""` is an empty string, not NULL). */
  #quotedFields: boolean[] = [];
  readonly #onRecord: (fields: string[], quoted: boolean[], line: number) => void;

  constructor(onRecord: (fields: string[], quoted: boolean[], line: number) => void) {
    this.#onRecord = onRecord;
  }

  push(text: string): void {
    let segment = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      switch (this.#state) {
        case 'start':
          if (c === QUOTE) {
            this.#state = 'quoted';
            this.#quoted = true;
            segment = i + 1;
          } else if (c === COMMA) this.#endField();
          else if (c === LF) this.#endLine();
          else if (c === CR) this.#state = 'cr';
          else {
            this.#state = 'unquoted';
            segment = i;
          }
          break;
        case 'unquoted':
          if (c === COMMA || c === LF || c === CR) {
            this.#field += text.slice(segment, i);
            if (c === LF) this.#endLine();
            else if (c === CR) this.#state = 'cr';
            else this.#endField();
          } else if (c === QUOTE) this.#fail(`a quote inside an unquoted field (quote the whole field and double the quote)`);
          break;
        case 'quoted':
          if (c === QUOTE) {
            this.#field += text.slice(segment, i);
            this.#state = 'quote';
          } else if (c === LF) this.#line++;
          break;
        case 'quote':
          // After a quote inside a quoted field: a second quote is an escaped one, else the field ended.
          if (c === QUOTE) {
            this.#field += '"';
            this.#state = 'quoted';
            segment = i + 1;
          } else if (c === COMMA) this.#endField();
          else if (c === LF) this.#endLine();
          else if (c === CR) this.#state = 'cr';
          else this.#fail('text after the closing quote of a field');
          break;
        case 'cr':
          if (c !== LF) this.#fail('a carriage return not followed by a line feed');
          this.#endLine();
          break;
      }
    }
    if (this.#state === 'unquoted' || this.#state === 'quoted') this.#field += text.slice(segment);
  }

  /** The end of the text: the last record needs no line break. */
  end(): void {
    if (this.#state === 'quoted') {
      this.#line = this.#recordLine;
      this.#fail('a quoted field is never closed');
    }
    if (this.#state === 'start' && this.#record.length === 0) return;
    this.#endLine();
  }

  #endField(): void {
    this.#record.push(this.#field);
    this.#quotedFields.push(this.#quoted);
    this.#field = '';
    this.#quoted = false;
    this.#state = 'start';
  }

  #endLine(): void {
    if (this.#record.length === 0 && this.#field === '' && !this.#quoted) {
      // DuckDB reads an empty line as a NULL row in a one-column file and skips it otherwise, so
      // its row count would be ambiguous: refuse it.
      this.#fail('an empty line (remove it)');
    }
    this.#endField();
    const record = this.#record;
    const quoted = this.#quotedFields;
    this.#record = [];
    this.#quotedFields = [];
    this.#onRecord(record, quoted, this.#recordLine);
    this.#line++;
    this.#recordLine = this.#line;
  }

  #fail(problem: string): never {
    throw new CleanroomError('DATASET_MALFORMED', `CSV line ${this.#line}: ${problem}`);
  }
}

/**
 * Describes an RFC 4180 CSV file (comma separated, a header row of column names, CRLF or LF line
 * breaks, UTF-8) in one streaming pass: its schema, row count and size. Each column gets the
 * narrowest of BOOLEAN (`true`/`false`), INTEGER, BIGINT, DOUBLE, DATE (`YYYY-MM-DD`),
 * TIMESTAMP (`YYYY-MM-DD HH:MM:SS[.ffffff]`) that all its values fit, else VARCHAR; an empty
 * unquoted cell is NULL and `""` the empty string (as the worker reads CSV), and a column of
 * NULLs only is VARCHAR. Numbers with a leading zero stay text. Empty lines are refused: DuckDB
 * would count them differently in one-column files. Throws `CleanroomError` DATASET_MALFORMED for a file that is not such a CSV
 * (naming the line) and VALIDATION_FAILED for unusable column names. Reads nothing but the stream.
 */
export async function describeCsv(stream: ReadableStream<Uint8Array>): Promise<DatasetDescription> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let names: string[] | null = null;
  let masks: number[] = [];
  let seen: boolean[] = [];
  let rowCount = 0;
  let bytes = 0;
  const scanner = new CsvScanner((fields, quoted, line) => {
    if (names === null) {
      names = header(fields);
      masks = names.map(() => ANY);
      seen = names.map(() => false);
      return;
    }
    if (fields.length !== names.length) {
      throw new CleanroomError('DATASET_MALFORMED', `CSV line ${line}: ${fields.length} fields, the header has ${names.length}`);
    }
    for (let i = 0; i < fields.length; i++) {
      const value = fields[i]!;
      if (value === '') {
        // An empty unquoted cell is NULL; `""` is the empty string, which only VARCHAR holds.
        if (quoted[i]) {
          seen[i] = true;
          masks[i] = 0;
        }
        continue;
      }
      seen[i] = true;
      if (masks[i] !== 0) masks[i]! &= fits(value);
    }
    rowCount++;
  });

  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      bytes += value.byteLength;
      scanner.push(decode(decoder, value, false));
    }
    scanner.push(decode(decoder, undefined, true));
    scanner.end();
  } catch (error) {
    await reader.cancel().catch(() => undefined);
    throw error;
  } finally {
    reader.releaseLock();
  }
  if (names === null) throw new CleanroomError('DATASET_MALFORMED', 'the CSV file is empty: it needs a header row');
  const columns: string[] = names;
  const schema = columns.map((name, i) => ({ name, type: seen[i] ? typeOf(masks[i]!) : ('VARCHAR' as const) }));
  return { schema, rowCount, bytes };
}

function typeOf(mask: number): DatasetColumnType {
  return NARROWEST_FIRST.find(([bit]) => (mask & bit) !== 0)?.[1] ?? 'VARCHAR';
}

/** The column names, checked as a registration will check them. */
function header(fields: string[]): string[] {
  const parsed = v.safeParse(
    DatasetSchemaSchema,
    fields.map((name) => ({ name, type: 'VARCHAR' })),
  );
  if (!parsed.success) {
    const issue = parsed.issues[0];
    const where = issue.path?.[0]?.key;
    const column = typeof where === 'number' ? ` (column ${where + 1})` : '';
    throw new CleanroomError('VALIDATION_FAILED', `CSV header${column}: ${issue.message}`);
  }
  return fields;
}

function decode(decoder: TextDecoder, bytes: Uint8Array | undefined, last: boolean): string {
  try {
    return decoder.decode(bytes, { stream: !last });
  } catch (error) {
    throw new CleanroomError('DATASET_MALFORMED', 'the CSV file is not valid UTF-8', { cause: error });
  }
}
