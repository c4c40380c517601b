import type { LegacyItem, LegacySource } from './source.ts';

/**
 * The old SQL table's NDJSON export as a legacy source: one JSON object per line, with its `id`
 * column (a string or an integer) and the same fields as the Firestore documents. A line that is
 * not such an object, or repeats an id, is reported as odd under `line N`, never skipped.
 */
export function ndjsonSource(lines: AsyncIterable<string>, description: string): LegacySource {
  return {
    origin: 'ndjson',
    description: `ndjson:${description}`,
    async *items(): AsyncGenerator<LegacyItem> {
      const seen = new Map<string, number>();
      let number = 0;
      for await (const line of lines) {
        number++;
        if (line.trim() === '') continue;
        let row: unknown;
        try {
          row = JSON.parse(line);
        } catch {
          yield { kind: 'unreadable', id: `line ${number}`, reasons: ['record: is not valid JSON'] };
          continue;
        }
        if (row === null || typeof row !== 'object' || Array.isArray(row)) {
          yield { kind: 'unreadable', id: `line ${number}`, reasons: ['record: is not a JSON object'] };
          continue;
        }
        const data = row as Record<string, unknown>;
        const id = typeof data.id === 'string' ? data.id : Number.isSafeInteger(data.id) ? String(data.id) : null;
        if (id === null) {
          yield { kind: 'unreadable', id: `line ${number}`, reasons: ['id: missing, or neither a string nor an integer'] };
          continue;
        }
        // A repeated id would otherwise look "already migrated" and hide the second row's data.
        const first = seen.get(id);
        if (first !== undefined) {
          yield { kind: 'unreadable', id: `line ${number}`, reasons: [`id: ${id} repeats the row on line ${first}`] };
          continue;
        }
        seen.set(id, number);
        yield { kind: 'record', input: { id, data, subcollections: [] }, ref: null };
      }
    },
  };
}
