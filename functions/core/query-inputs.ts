import { CleanroomError } from '../../protocol/errors.ts';
import type { TaskInput, TaskRecipientKey } from '../../protocol/dataset.ts';
import type { DatasetRecord, QueryRecord, SessionRecord } from './records.ts';

/** A query's input as its record keeps it: which dataset, under which table name. */
export type QueryInputRef = NonNullable<QueryRecord['inputs']>[number];

/**
 * The datasets a query reads: those whose table name occurs in the SQL as a whole word, in any
 * case (`FROM Sales s`, `"sales"`, `sales.email`). A pre-filter only, so that the worker loads
 * what the query may name; the worker still checks the parsed query against these tables. A
 * name that occurs only inside a string literal or a comment is included too: loading one table
 * more is safe, missing one would fail the query.
 */
export function selectInputs(sql: string, datasets: readonly DatasetRecord[]): QueryInputRef[] {
  const words = new Set(sql.toLowerCase().match(/[a-z0-9_]+/g) ?? []);
  return datasets.filter((d) => words.has(d.table)).map((d) => ({ dataset_id: d.id, table: d.table }));
}

/**
 * Each recipient's registered encryption key, in the order of `recipients`. A recipient without
 * registered keys could never open the result: RECIPIENT_KEY_MISSING.
 */
export function recipientKeysFor(session: SessionRecord, recipients: readonly string[]): TaskRecipientKey[] {
  return recipients.map((email) => {
    const keys = session.participants.find((p) => p.email === email)?.keys;
    if (!keys) {
      throw new CleanroomError('RECIPIENT_KEY_MISSING', `${email} has not joined this session with keys yet: they run \`cleanroom session join ${session.id}\`, then propose again`);
    }
    return { email, encryption_jwk: { ...keys.encryption_jwk } };
  });
}

/**
 * The task's inputs for `query`: its input references resolved against the session's dataset
 * records (which never change, so this is a function of stored records). A reference without its
 * record means the store lost data: INTERNAL, and the query is not dispatched.
 */
export function taskInputsFor(query: QueryRecord, datasets: readonly DatasetRecord[]): TaskInput[] {
  return (query.inputs ?? []).map((ref) => {
    const d = datasets.find((candidate) => candidate.id === ref.dataset_id && candidate.session_id === query.session_id);
    if (!d) throw new CleanroomError('INTERNAL', 'a dataset the query reads is missing from the store');
    return {
      dataset_id: d.id,
      table: d.table,
      owner_email: d.owner_email,
      object_key: d.object_key,
      format: d.format,
      ...(d.csv !== undefined ? { csv: { ...d.csv } } : {}),
      schema: d.schema.map((column) => ({ ...column })),
      row_count: d.row_count,
      ciphertext_bytes: d.ciphertext_bytes,
      ciphertext_sha256: d.ciphertext_sha256,
      wrapped_key: d.wrapped_key,
      session_key_thumbprint: d.session_key_thumbprint,
    };
  });
}
