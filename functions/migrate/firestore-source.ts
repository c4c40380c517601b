import { DocumentReference, FieldPath, GeoPoint, Timestamp, type CollectionReference, type DocumentData, type Firestore, type QueryDocumentSnapshot } from '@google-cloud/firestore';
import type { LegacyItem, LegacySource } from './source.ts';

/** Legacy documents per page; small enough for memory, large enough for few round trips. */
export const DEFAULT_PAGE_SIZE = 200;

/**
 * The legacy collection read page by page in document-id order, so a run that stops can be
 * repeated (or limited) without skipping or re-reading records out of order.
 */
export function firestoreSource(db: Firestore, options: { collection: string; pageSize?: number }): LegacySource {
  const pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE;
  return {
    origin: 'firestore',
    description: `firestore:${options.collection}`,
    async *items(): AsyncGenerator<LegacyItem> {
      for await (const doc of pages(db.collection(options.collection), pageSize)) {
        const names = (await doc.ref.listCollections()).map((c) => c.id).sort();
        yield { kind: 'record', input: { id: doc.id, data: toPlain(doc.data()) as Record<string, unknown>, subcollections: names }, ref: doc.ref };
      }
    },
  };
}

/** One document below a legacy record, with its path relative to that record. */
export interface ChildDocument {
  /** E.g. `datasets/d1` or `datasets/d1/files/f1`. */
  path: string;
  data: DocumentData;
}

/**
 * Every document in every subcollection below `ref`, at any depth, page by page. Subcollection
 * names come sorted, documents in id order, so two walks over unchanged data agree.
 */
export async function* walkChildren(ref: DocumentReference, pageSize = DEFAULT_PAGE_SIZE, prefix = ''): AsyncGenerator<ChildDocument> {
  const collections = (await ref.listCollections()).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  for (const collection of collections) {
    for await (const doc of pages(collection, pageSize)) {
      const path = `${prefix}${collection.id}/${doc.id}`;
      yield { path, data: doc.data() };
      yield* walkChildren(doc.ref, pageSize, `${path}/`);
    }
  }
}

async function* pages(collection: CollectionReference, pageSize: number): AsyncGenerator<QueryDocumentSnapshot> {
  let after: string | undefined;
  for (;;) {
    let query = collection.orderBy(FieldPath.documentId()).limit(pageSize);
    if (after !== undefined) query = query.startAfter(after);
    const snapshot = await query.get();
    yield* snapshot.docs;
    const last = snapshot.docs.at(-1);
    if (snapshot.size < pageSize || !last) return;
    after = last.id;
  }
}

/**
 * Firestore values as JSON, the form the mapping parses and the archive hash covers: Timestamps
 * as ISO strings (millisecond precision, the store's form), references as their paths, GeoPoints
 * as `{latitude, longitude}`, bytes as base64. Any other class instance is left as is, so the
 * archive hash refuses it and the record is reported rather than hashed wrongly.
 */
export function toPlain(value: unknown): unknown {
  if (value instanceof Timestamp) return value.toDate().toISOString();
  if (value instanceof DocumentReference) return value.path;
  if (value instanceof GeoPoint) return { latitude: value.latitude, longitude: value.longitude };
  if (value instanceof Uint8Array) return Buffer.from(value).toString('base64');
  if (Array.isArray(value)) return value.map(toPlain);
  if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([k, x]) => [k, toPlain(x)]));
  }
  return value;
}
