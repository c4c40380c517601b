import type { DatasetColumnType } from '../../protocol/dataset.ts';

/**
 * The throwaway inputs a context warms its load path on before it reports ready (`engine.warmUp`).
 * The worker writes them into the context's directory before starting the child and deletes them
 * once it is ready. Shared by both sides; it loads neither DuckDB nor valibot.
 */

/** File names in the context directory; a leading dot keeps them apart from `<table>.<format>`. */
export const WARM_UP_FILES = { csv: '.warm-up.csv', parquet: '.warm-up.parquet' } as const;

/** The columns of both warm-up files. */
export const WARM_UP_COLUMNS: { name: string; type: DatasetColumnType }[] = [
  { name: 'a', type: 'INTEGER' },
  { name: 'b', type: 'VARCHAR' },
  { name: 'c', type: 'BIGINT' },
];

export const WARM_UP_CSV = 'a,b,c\n1,x,2\n1,,3\n';

/**
 * The same two rows as Parquet (snappy), as DuckDB 1.5.6 writes them: `COPY (SELECT a::INTEGER AS a,
 * b, c::BIGINT AS c FROM (VALUES (1, 'x', 2), (1, NULL, 3)) v(a, b, c)) TO 'w.parquet' (FORMAT parquet)`.
 * The first Parquet read in a process costs ~5 ms of lazy initialisation; this moves it to start-up.
 */
export const WARM_UP_PARQUET_BASE64 =
  'UEFSMRUAFRwVICwVBBUAFQYVBgAADjQCAAAABAEBAAAAAQAAABUAFVQVJCwVBBUAFQYVBgAAKhghAAAAQQEAdgEAEAEAAAB4FQAVLBUuLBUEFQAVBhUGAAAWFAIAAAAEAQEGLAAAAAADAAAAAAAAABUCGUw1ABgNZHVja2RiX3NjaGVtYRUGABUCJQIYAWElIgAVDCUCGAFiJQAAFQQlAhgBYyUkABYEGRwZPCYAHBUCGRUAGRgBYRUCFgQWPhZCJgg8GAQBAAAAGAQBAAAAFgAoBAEAAAAYBAEAAAAREQAAACYAHBUMGRUAGRgBYhUCFgQWdhZGJko8GAF4GAF4FgIoAXgYAXgREQAAACYAHBUEGRUAGRgBYxUCFgQWThZQJpABPBgIAwAAAAAAAAAYCAIAAAAAAAAAFgAoCAMAAAAAAAAAGAgCAAAAAAAAABERAAAAFoICFgQmCBbYAQAoKER1Y2tEQiB2ZXJzaW9uIHYxLjUuNiAoYnVpbGQgMDY5Y2M5ZjliNSkZPBwAABwAABwAAAAkAQAAUEFSMQ==';
