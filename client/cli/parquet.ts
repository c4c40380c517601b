import { DuckDBInstance } from '@duckdb/node-api';
import { DATASET_COLUMN_TYPES, parseDecimalType, type DatasetColumnType } from '../../protocol/dataset.ts';
import { CleanroomError } from '../../protocol/errors.ts';
import type { DatasetDescription } from '../sdk/csv-describe.ts';
import { regularFileSize } from './files.ts';

/**
 * Parquet column types and the dataset type each is declared as: the worker loads them with an
 * exact cast (every value kept as is), so these and only these are accepted.
 */
const DECLARED_AS: Record<string, DatasetColumnType> = {
  BOOLEAN: 'BOOLEAN',
  TINYINT: 'INTEGER',
  SMALLINT: 'INTEGER',
  INTEGER: 'INTEGER',
  UTINYINT: 'INTEGER',
  USMALLINT: 'INTEGER',
  BIGINT: 'BIGINT',
  UINTEGER: 'BIGINT',
  FLOAT: 'DOUBLE',
  DOUBLE: 'DOUBLE',
  VARCHAR: 'VARCHAR',
  DATE: 'DATE',
  TIMESTAMP: 'TIMESTAMP',
  TIMESTAMP_MS: 'TIMESTAMP',
  TIMESTAMP_S: 'TIMESTAMP',
};

/**
 * Describes a Parquet file with DuckDB (Node only, so here and not in the SDK): its columns by
 * `DESCRIBE SELECT * FROM read_parquet(?)`, each declared as the dataset type it converts to
 * exactly (SMALLINT as INTEGER, FLOAT as DOUBLE, ..., DECIMAL(p,s) as itself), and its row count.
 * A column of any other type (HUGEINT, UBIGINT, TIMESTAMP WITH TIME ZONE, TIMESTAMP_NS, BLOB, lists, ...) is
 * refused with VALIDATION_FAILED naming it: cast it before uploading. A file DuckDB cannot read
 * as Parquet is DATASET_MALFORMED.
 */
export async function describeParquet(path: string): Promise<DatasetDescription> {
  const bytes = await regularFileSize(path);
  const instance = await DuckDBInstance.create(':memory:', { autoinstall_known_extensions: 'false', autoload_known_extensions: 'false' });
  const connection = await instance.connect();
  try {
    let described: Array<Record<string, unknown>>;
    let counted: Array<Record<string, unknown>>;
    try {
      const describe = await connection.prepare('DESCRIBE SELECT * FROM read_parquet($1)');
      describe.bindVarchar(1, path);
      described = (await describe.runAndReadAll()).getRowObjectsJson();
      const count = await connection.prepare('SELECT count(*)::VARCHAR AS n FROM read_parquet($1)');
      count.bindVarchar(1, path);
      counted = (await count.runAndReadAll()).getRowObjectsJson();
    } catch (error) {
      throw new CleanroomError('DATASET_MALFORMED', `${path} is not a Parquet file DuckDB can read`, { cause: error });
    }
    const schema = described.map((row) => ({ name: String(row.column_name), type: columnType(String(row.column_name), String(row.column_type)) }));
    const rowCount = Number(counted[0]?.n);
    if (!Number.isSafeInteger(rowCount)) throw new CleanroomError('DATASET_MALFORMED', `${path}: row count is not readable`);
    return { schema, rowCount, bytes };
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}

function columnType(name: string, type: string): DatasetColumnType {
  const declared = Object.hasOwn(DECLARED_AS, type) ? DECLARED_AS[type] : undefined;
  if (declared !== undefined) return declared;
  // A DECIMAL is declared as itself: the worker loads it only as that very DECIMAL.
  if (parseDecimalType(type) !== null) return type as DatasetColumnType;
  throw new CleanroomError(
    'VALIDATION_FAILED',
    `column ${JSON.stringify(name)} has type ${type}, which datasets do not support (supported: ${DATASET_COLUMN_TYPES.join(', ')}, DECIMAL(p,s)): cast it before uploading`,
  );
}
