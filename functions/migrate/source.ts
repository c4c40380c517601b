import type { DocumentReference } from '@google-cloud/firestore';
import type { LegacyInput } from './map.ts';

/**
 * One item of a legacy source: a record to map, or something that could not even be read as a
 * record (an NDJSON line that is not JSON), which the report lists as odd.
 */
export type LegacyItem =
  | {
      kind: 'record';
      input: LegacyInput;
      /** The legacy document, whose subcollections are copied; null for NDJSON rows. */
      ref: DocumentReference | null;
    }
  | { kind: 'unreadable'; id: string; reasons: string[] };

/** Where legacy records come from: the Firestore collection or the old SQL table's NDJSON export. */
export interface LegacySource {
  origin: 'firestore' | 'ndjson';
  /** For the report, e.g. `firestore:tees`. */
  description: string;
  items(): AsyncIterable<LegacyItem>;
}
