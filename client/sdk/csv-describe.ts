import * as v from 'valibot';
import { RFC4180_DIALECT, type CsvDialect } from '../../protocol/csv-dialect.ts';
import { DatasetSchemaSchema, MAX_DECIMAL_PRECISION, decimalType, type DatasetColumnType, type DatasetSchema } from '../../protocol/dataset.ts';
import { CleanroomError } from '../../protocol/errors.ts';

/** What a plaintext dataset file holds, as its owner registers it (public metadata). */
export interface DatasetDescription {
  schema: DatasetSchema;
  /** Data rows (the header row not counted). */
  rowCount: number;
  /** Plaintext size in bytes. */
  bytes: number;
  /** A CSV's dialect, recorded in the registration and the encrypted header. */
  csv?: CsvDialect;
}

/**
 * One bit per type a value fits; a column's type is the narrowest one every non-null value fits.
 * Shared with the CLI's DuckDB describer (`client/cli/csv-duckdb.ts`), which computes the same
 * bits in SQL from the same patterns, so both describe a comma CSV alike.
 */
export const TYPE_BITS = { BOOLEAN: 1, INTEGER: 2, BIGINT: 4, DECIMAL: 8, DOUBLE: 16, DATE: 32, TIMESTAMP: 64 } as const;
const { BOOLEAN, INTEGER, BIGINT, DECIMAL, DOUBLE, DATE, TIMESTAMP } = TYPE_BITS;
/** Every bit: what a column fits before its first value. */
export const ANY_TYPE = BOOLEAN | INTEGER | BIGINT | DECIMAL | DOUBLE | DATE | TIMESTAMP;

/**
 * The numeric and date patterns, in the syntax JavaScript and RE2 (DuckDB's `regexp_full_match`)
 * share; a value must match one whole. BOOLEAN is `true` or `false` in any case. A leading zero (`007`) makes a value text: as a number it would not
 * read back the same. A plain decimal (no exponent) fits DECIMAL, so `12.50` stays exact.
 */
export const VALUE_PATTERNS = {
  integer: '[+-]?(0|[1-9][0-9]*)',
  decimal: '[+-]?(0|[1-9][0-9]*)\\.[0-9]+',
  float: '[+-]?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][+-]?[0-9]{1,3})?',
  date: '[0-9]{4}-[0-9]{2}-[0-9]{2}',
  // Hours 00-23: DuckDB itself would read 24:00:00 as the next day.
  timestamp: '[0-9]{4}-[0-9]{2}-[0-9]{2} ([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?',
} as const;

const whole = (pattern: string): RegExp => new RegExp(`^(?:${pattern})$`);
const INT = whole(VALUE_PATTERNS.integer);
const PLAIN_DECIMAL = whole(VALUE_PATTERNS.decimal);
const FLOAT = whole(VALUE_PATTERNS.float);
const DATE_RE = /^([0-9]{4})-([0-9]{2})-([0-9]{2})$/;
const TIMESTAMP_RE = /^([0-9]{4})-([0-9]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,6})?$/;
const INT32_MIN = -(2n ** 31n);
const INT32_MAX = 2n ** 31n - 1n;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/**
 * What the values of one column fit so far: the type bits all of them fit, whether any value was
 * seen, and, for DECIMAL, the most digits before and after the point.
 */
export interface ColumnFacts {
  mask: number;
  seen: boolean;
  integerDigits: number;
  scale: number;
}

/** A column before its first value. */
export function newColumnFacts(): ColumnFacts {
  return { mask: ANY_TYPE, seen: false, integerDigits: 0, scale: 0 };
}

/** Narrows `facts` by one non-empty CSV value. */
function observe(facts: ColumnFacts, value: string): void {
  facts.seen = true;
  if (facts.mask === 0) return;
  const first = value.charCodeAt(0);
  // Most values are plainly text; skip the patterns for them.
  const numeric = (first >= 48 && first <= 57) || first === 43 || first === 45;
  if (!numeric) {
    facts.mask &= value.length <= 5 && /^(true|false)$/i.test(value) ? BOOLEAN : 0;
    return;
  }
  const sign = first === 43 || first === 45 ? 1 : 0;
  if (INT.test(value)) {
    const count = value.length - sign;
    facts.mask &= integerBits(value, count) | (count <= MAX_DECIMAL_PRECISION ? DECIMAL : 0) | DOUBLE;
    facts.integerDigits = Math.max(facts.integerDigits, count);
    return;
  }
  if (FLOAT.test(value)) {
    if (!Number.isFinite(Number(value))) facts.mask = 0;
    else if (!PLAIN_DECIMAL.test(value)) facts.mask &= DOUBLE;
    else {
      const point = value.indexOf('.');
      facts.mask &= DECIMAL | DOUBLE;
      facts.integerDigits = Math.max(facts.integerDigits, point - sign);
      facts.scale = Math.max(facts.scale, value.length - point - 1);
    }
    return;
  }
  if (value.length === 10) {
    const m = DATE_RE.exec(value);
    facts.mask &= m !== null && validDate(m) ? DATE | TIMESTAMP : 0;
    return;
  }
  const m = TIMESTAMP_RE.exec(value);
  facts.mask &= m !== null && validDate(m) && Number(m[4]) <= 23 && Number(m[5]) <= 59 && Number(m[6]) <= 59 ? TIMESTAMP : 0;
}

/** INTEGER and BIGINT bits of an integer with `count` digits. */
function integerBits(value: string, count: number): number {
  if (count <= 9) return INTEGER | BIGINT;
  if (count > 19) return 0;
  const n = BigInt(value);
  if (n >= INT32_MIN && n <= INT32_MAX) return INTEGER | BIGINT;
  return n >= INT64_MIN && n <= INT64_MAX ? BIGINT : 0;
}

const NARROWEST_FIRST: ReadonlyArray<readonly [number, DatasetColumnType | 'DECIMAL']> = [
  [BOOLEAN, 'BOOLEAN'],
  [INTEGER, 'INTEGER'],
  [BIGINT, 'BIGINT'],
  [DECIMAL, 'DECIMAL'],
  [DOUBLE, 'DOUBLE'],
  [DATE, 'DATE'],
  [TIMESTAMP, 'TIMESTAMP'],
];

/**
 * A column's type: the narrowest every value fits, VARCHAR when none or nothing was seen. A
 * DECIMAL is sized to hold every value exactly (`DECIMAL(integer digits + scale, scale)`); past 38
 * digits it is DOUBLE.
 */
export function columnType(facts: ColumnFacts): DatasetColumnType {
  if (!facts.seen) return 'VARCHAR';
  for (const [bit, type] of NARROWEST_FIRST) {
    if ((facts.mask & bit) === 0) continue;
    if (type !== 'DECIMAL') return type;
    const precision = facts.integerDigits + facts.scale;
    if (precision <= MAX_DECIMAL_PRECISION) return decimalType(Math.max(precision, 1), facts.scale);
  }
  return 'VARCHAR';
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
 * breaks, UTF-8) in one streaming pass: its schema, row count, size and dialect (always
 * {@link RFC4180_DIALECT}: this reader knows no other; the CLI describes any dialect with DuckDB).
 * Each column gets the narrowest of BOOLEAN (`true`/`false`), INTEGER, BIGINT, DECIMAL(p,s)
 * (plain decimals such as `12.50`, sized to hold every value exactly), DOUBLE (an exponent, or
 * more than 38 digits), DATE (`YYYY-MM-DD`), TIMESTAMP (`YYYY-MM-DD HH:MM:SS[.ffffff]`) that all
 * its values fit, else VARCHAR; an empty unquoted cell is NULL and `""` the empty string (as the
 * worker reads CSV), and a column of NULLs only is VARCHAR. Numbers with a leading zero stay text.
 * Empty lines are refused: DuckDB would count them differently in one-column files. Throws
 * `CleanroomError` DATASET_MALFORMED for a file that is not such a CSV (naming the line) and
 * VALIDATION_FAILED for unusable column names. Reads nothing but the stream.
 */
export async function describeCsv(stream: ReadableStream<Uint8Array>): Promise<DatasetDescription> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let names: string[] | null = null;
  let facts: ColumnFacts[] = [];
  let rowCount = 0;
  let bytes = 0;
  const scanner = new CsvScanner((fields, quoted, line) => {
    if (names === null) {
      names = header(fields);
      facts = names.map(newColumnFacts);
      return;
    }
    if (fields.length !== names.length) {
      throw new CleanroomError('DATASET_MALFORMED', `CSV line ${line}: ${fields.length} fields, the header has ${names.length}`);
    }
    for (let i = 0; i < fields.length; i++) {
      const value = fields[i]!;
      const column = facts[i]!;
      if (value === '') {
        // An empty unquoted cell is NULL; `""` is the empty string, which only VARCHAR holds.
        if (quoted[i]) {
          column.seen = true;
          column.mask = 0;
        }
        continue;
      }
      observe(column, value);
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
  const schema = columns.map((name, i) => ({ name, type: columnType(facts[i]!) }));
  return { schema, rowCount, bytes, csv: { ...RFC4180_DIALECT } };
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
