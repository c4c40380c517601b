import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isDatasetColumnType, type DatasetColumnType } from '../../protocol/dataset.ts';
import { createInputFile } from './input-files.ts';
import type { ExecuteRequest, FileInput, InputSource, InputTarget, LoadedInput, QueryResult, ResultRef, ResultSink } from './ports.ts';

/**
 * ⚠ TEST-ONLY adapters of the executor's ports: plaintext inputs read from CSV files and plaintext
 * results kept in memory. They exist so tests and benchmarks drive the executor through the same
 * ports the encrypted data path uses. A deployment must never construct them (a local stack may,
 * only behind an explicit TEST-ONLY setting that it logs); each refuses to be constructed unless
 * `allowTestOnly: true` is passed.
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
 * ⚠ TEST-ONLY {@link InputSource}: `<directory>/<sessionId>/<table>.csv`, whatever the request's
 * `inputs` say. The header row names each column as `name:TYPE` (a dataset column type);
 * the rest is RFC 4180, where an empty unquoted cell is NULL. Materializing writes the file with a
 * plain header row (the names) and declares the types; the row count is not declared.
 */
export class TestOnlyPlaintextFixtureInputs implements InputSource {
  readonly #directory: string;

  constructor(options: TestOnlyOptions & { directory: string }) {
    assertTestOnly(options, 'TestOnlyPlaintextFixtureInputs');
    this.#directory = options.directory;
  }

  async tableNames(request: ExecuteRequest): Promise<string[]> {
    if (!SESSION_DIR.test(request.sessionId)) return [];
    try {
      const files = await readdir(join(this.#directory, request.sessionId));
      return files
        .filter((f) => f.endsWith('.csv'))
        .map((f) => f.slice(0, -4))
        .sort();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
  }

  async materialize(request: ExecuteRequest, names: readonly string[], target: InputTarget): Promise<FileInput[]> {
    const known = new Set(await this.tableNames(request));
    const inputs: FileInput[] = [];
    for (const name of names) {
      if (!known.has(name)) throw new TypeError('no such fixture table');
      request.signal?.throwIfAborted();
      const { columns, body } = parseFixture(await readFile(join(this.#directory, request.sessionId, `${name}.csv`), 'utf8'));
      const { file, handle } = await createInputFile(target, name, 'csv');
      try {
        await handle.writeFile(`${columns.map((c) => csvCell(c.name)).join(',')}\n${body}`);
      } finally {
        await handle.close();
      }
      inputs.push({ name, file, format: 'csv', columns, rowCount: null });
    }
    return inputs;
  }
}

function csvCell(text: string): string {
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** A fixture file split into its declared columns (from the `name:TYPE` header row) and the rows after it. */
export function parseFixture(text: string): { columns: { name: string; type: DatasetColumnType }[]; body: string } {
  const newline = text.indexOf('\n');
  const header = (newline === -1 ? text : text.slice(0, newline)).replace(/\r$/, '');
  if (header === '') throw new TypeError('fixture without a header');
  const columns = header.split(',').map((cell) => {
    const at = cell.lastIndexOf(':');
    const type = cell.slice(at + 1);
    if (at < 1 || !isDatasetColumnType(type)) throw new TypeError('fixture header cells are name:TYPE');
    return { name: cell.slice(0, at), type };
  });
  return { columns, body: newline === -1 ? '' : text.slice(newline + 1) };
}

/**
 * ⚠ TEST-ONLY {@link ResultSink} that keeps plaintext results in memory so tests can read the rows
 * a query produced (and check that nothing from another session or a file is among them).
 */
export class TestOnlyPlaintextResultSink implements ResultSink {
  readonly #results = new Map<string, QueryResult & { inputs: LoadedInput[] }>();

  constructor(options: TestOnlyOptions) {
    assertTestOnly(options, 'TestOnlyPlaintextResultSink');
  }

  async write(request: ExecuteRequest, result: QueryResult, inputs: LoadedInput[]): Promise<ResultRef> {
    const { sessionId, queryId } = request;
    this.#results.set(`${sessionId}/${queryId}`, { ...result, inputs });
    return { ref: `test-only-plaintext:${sessionId}/${queryId}`, rows: result.rows.length, bytes: result.bytes };
  }

  /** The plaintext result of a query, if it succeeded, with the inputs it was computed from. */
  read(sessionId: string, queryId: string): (QueryResult & { inputs: LoadedInput[] }) | undefined {
    return this.#results.get(`${sessionId}/${queryId}`);
  }
}
