import * as v from 'valibot';
import { CONTEXT_FAILURE_CODES } from './codes.ts';
import { FileInputSchema } from './ports.ts';

/**
 * The frames between the worker (parent) and one execution context (child), one JSON object per
 * line. A context is treated as untrusted once it has seen query text, so the parent validates
 * every frame it reads with these schemas and bounds every size.
 *
 * Sequence: parent `init` (the context's input directory) → child `ready` (DuckDB created, confined
 * to that directory, locked and warmed up) ... parent `parse` → child `parsed` (the parse tree, no
 * data loaded yet) → parent checks the policy and writes only the named tables into the directory →
 * parent `load` (how to load each file) → child `loaded` (tables created, schema and row counts
 * checked) → parent deletes the files → parent `run` → child `result` or `failed`. The context is
 * then discarded. `failed` may answer any frame.
 */

/** Longest parse tree accepted from a context (the SQL itself is at most 100,000 characters). */
export const MAX_TREE_CHARS = 16 * 1024 * 1024;

export const InitFrameSchema = v.strictObject({
  t: v.literal('init'),
  threads: v.pipe(v.number(), v.integer(), v.minValue(1)),
  memoryLimitMb: v.pipe(v.number(), v.integer(), v.minValue(1)),
  /**
   * The only directory the context's DuckDB may open files in (absolute, with a trailing `/`); it
   * holds the warm-up files (`warm-up.ts`) when the context starts.
   */
  directory: v.pipe(v.string(), v.startsWith('/'), v.endsWith('/')),
});
export const ParseFrameSchema = v.strictObject({ t: v.literal('parse'), sql: v.string() });
export const LoadFrameSchema = v.strictObject({ t: v.literal('load'), inputs: v.array(FileInputSchema) });
export const RunFrameSchema = v.strictObject({
  t: v.literal('run'),
  maxRows: v.pipe(v.number(), v.integer(), v.minValue(1)),
  maxBytes: v.pipe(v.number(), v.integer(), v.minValue(1)),
});
/** Any frame the parent sends (the child does not re-validate them: it trusts its parent). */
export const ParentFrameSchema = v.variant('t', [InitFrameSchema, ParseFrameSchema, LoadFrameSchema, RunFrameSchema]);
export type ParentFrame = v.InferOutput<typeof ParentFrameSchema>;

const ResultColumnSchema = v.strictObject({
  name: v.pipe(v.string(), v.maxLength(4096)),
  type: v.pipe(v.string(), v.maxLength(4096)),
});

/** Any frame a context sends. Row values are JSON by construction; the parent re-checks the caps. */
export const ChildFrameSchema = v.variant('t', [
  v.strictObject({ t: v.literal('ready') }),
  v.strictObject({ t: v.literal('parsed'), tree: v.pipe(v.string(), v.maxLength(MAX_TREE_CHARS)) }),
  v.strictObject({ t: v.literal('loaded') }),
  v.strictObject({
    t: v.literal('result'),
    columns: v.pipe(v.array(ResultColumnSchema), v.maxLength(10_000)),
    rows: v.array(v.array(v.unknown())),
    bytes: v.pipe(v.number(), v.integer(), v.minValue(0)),
  }),
  v.strictObject({ t: v.literal('failed'), code: v.picklist(CONTEXT_FAILURE_CODES) }),
]);
export type ChildFrame = v.InferOutput<typeof ChildFrameSchema>;
