import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { INPUT_COLUMN_TYPES, type InputColumnType, type InputSource, type InputTable, type InputValue, type QueryResult, type ResultRef, type ResultSink } from './ports.ts';

/**
 * ⚠ TEST-ONLY adapters of the executor's ports: plaintext inputs read from CSV files and plaintext
 * results kept in memory. They exist so tests and benchmarks drive the executor through the same
 * ports the encrypted data path will use (issue 3 of 6). A deployment must never construct them
 * (a local stack may, only behind an explicit TEST-ONLY setting that it logs); each refuses to be
 * constructed unless `allowTestOnly: true` is passed.
 */

/** Proof that the caller knows it is using a TEST-ONLY adapter. */
export interface TestOnlyOptions {
  allowTestOnly: true;
}

function assertTestOnly(options: Partial<TestOnlyOptions> | undefined, name: string): void {
  if (options?.allowTestOnly !== true) throw new TypeError(`${name} is TEST-ONLY: pass { allowTestOnly: true }`);
}

// Session ids become directory names here: nothing that could climb out of the fixture root.
const SESSION_DIR = /^[A-Za-z0-9_-]{1,128}$/;

/**
 * ⚠ TEST-ONLY {@link InputSource}: `<directory>/<sessionId>/<table>.csv`. The header row names each
 * column as `name:TYPE` (a type of `INPUT_COLUMN_TYPES`); an empty unquoted cell is NULL.
 */
export class TestOnlyPlaintextFixtureInputs implements InputSource {
  readonly #directory: string;

  constructor(options: TestOnlyOptions & { directory: string }) {
    assertTestOnly(options, 'TestOnlyPlaintextFixtureInputs');
    this.#directory = options.directory;
  }

  async tableNames(sessionId: string): Promise<string[]> {
    if (!SESSION_DIR.test(sessionId)) return [];
    try {
      const files = await readdir(join(this.#directory, sessionId));
      return files.filter((f) => f.endsWith('.csv')).map((f) => f.slice(0, -4)).sort();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
  }

  async tables(sessionId: string, names: readonly string[]): Promise<InputTable[]> {
    const known = new Set(await this.tableNames(sessionId));
    return Promise.all(
      names.map(async (name) => {
        if (!known.has(name)) throw new TypeError('no such fixture table');
        return parseFixture(name, await readFile(join(this.#directory, sessionId, `${name}.csv`), 'utf8'));
      }),
    );
  }
}

/** One fixture file as an input table. */
export function parseFixture(name: string, text: string): InputTable {
  const [header, ...records] = parseCsv(text);
  if (header === undefined) throw new TypeError('fixture without a header');
  const columns = header.map((cell) => {
    const at = (cell ?? '').lastIndexOf(':');
    const type = (cell ?? '').slice(at + 1) as InputColumnType;
    if (at < 1 || !INPUT_COLUMN_TYPES.includes(type)) throw new TypeError('fixture header cells are name:TYPE');
    return { name: cell!.slice(0, at), type };
  });
  const rows = records.map((record) => columns.map((column, i) => fixtureValue(column.type, record[i] ?? null)));
  return { name, columns, rows };
}

function fixtureValue(type: InputColumnType, cell: string | null): InputValue {
  if (cell === null) return null;
  switch (type) {
    case 'INTEGER':
    case 'DOUBLE':
      return Number(cell);
    case 'BOOLEAN':
      return cell === 'true';
    default:
      return cell; // BIGINT stays a decimal string (exact); the rest is text
  }
}

/** RFC 4180 records: quoted cells may hold commas, quotes (doubled) and newlines; an empty unquoted cell is null. */
export function parseCsv(text: string): (string | null)[][] {
  const records: (string | null)[][] = [];
  let record: (string | null)[] = [];
  let cell = '';
  let quoted = false;
  let inQuotes = false;
  const endCell = (): void => {
    record.push(quoted || cell !== '' ? cell : null);
    cell = '';
    quoted = false;
  };
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (inQuotes) {
      if (ch === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (ch === '"') inQuotes = false;
      else cell += ch;
    } else if (ch === '"') {
      inQuotes = true;
      quoted = true;
    } else if (ch === ',') endCell();
    else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      endCell();
      records.push(record);
      record = [];
    } else cell += ch;
  }
  if (cell !== '' || quoted || record.length > 0) {
    endCell();
    records.push(record);
  }
  return records;
}

/**
 * ⚠ TEST-ONLY {@link ResultSink} that keeps plaintext results in memory so tests can read the rows
 * a query produced (and check that nothing from another session or a file is among them).
 */
export class TestOnlyPlaintextResultSink implements ResultSink {
  readonly #results = new Map<string, QueryResult>();

  constructor(options: TestOnlyOptions) {
    assertTestOnly(options, 'TestOnlyPlaintextResultSink');
  }

  async write(sessionId: string, queryId: string, result: QueryResult): Promise<ResultRef> {
    this.#results.set(`${sessionId}/${queryId}`, result);
    return { ref: `test-only-plaintext:${sessionId}/${queryId}`, rows: result.rows.length, bytes: result.bytes };
  }

  /** The plaintext result of a query, if it succeeded. */
  read(sessionId: string, queryId: string): QueryResult | undefined {
    return this.#results.get(`${sessionId}/${queryId}`);
  }
}
