import * as v from 'valibot';
import { APPROVAL_POLICIES, EmailSchema, LIMITS } from '../../protocol/session.ts';

/** Statuses of the per-VM era. Anything else is reported as odd, never guessed. */
export const LEGACY_STATUSES = ['CREATING', 'ACTIVE', 'TERMINATED'] as const;
export type LegacyStatus = (typeof LEGACY_STATUSES)[number];

// `YYYY-MM-DD[T ]hh:mm[:ss[.fff…]]` with an explicit zone: a date without a zone would be read in
// the migrating machine's local time, which is a guess.
const ISO_LIKE = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?\s?(Z|[+-]\d{2}(?::?\d{2})?)$/i;

/**
 * A legacy date string (ISO 8601 or the SQL export's `2024-01-02 03:04:05.123456+00`) as the
 * store's canonical `toISOString()` form, or null when it is not a real instant. Firestore
 * Timestamps reach this as ISO strings already (see `run.ts`).
 */
export function normalizeLegacyDate(text: string): string | null {
  const m = ISO_LIKE.exec(text.trim());
  if (!m) return null;
  const [, y, mo, d, h, mi, s = '0', frac = '', zone = 'Z'] = m;
  const ms = Number(frac.padEnd(3, '0').slice(0, 3));
  const utc = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s), ms);
  const check = new Date(utc);
  // Date.UTC rolls 2024-02-30 over to March; a rolled-over date is a bad date, not a new one.
  if (
    check.getUTCFullYear() !== Number(y) ||
    check.getUTCMonth() !== Number(mo) - 1 ||
    check.getUTCDate() !== Number(d) ||
    check.getUTCHours() !== Number(h) ||
    check.getUTCMinutes() !== Number(mi) ||
    check.getUTCSeconds() !== Number(s)
  ) {
    return null;
  }
  let offsetMinutes = 0;
  if (zone.toUpperCase() !== 'Z') {
    const digits = zone.slice(1).replace(':', '');
    offsetMinutes = (zone.startsWith('-') ? -1 : 1) * (Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2) || '0'));
    if (Math.abs(offsetMinutes) > 14 * 60) return null;
  }
  const instant = new Date(utc - offsetMinutes * 60_000);
  return instant.getUTCFullYear() < 1970 || instant.getUTCFullYear() > 9999 ? null : instant.toISOString();
}

const LegacyDateSchema = v.pipe(
  v.string('must be a Firestore Timestamp or a date string'),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const iso = normalizeLegacyDate(dataset.value);
    if (iso === null) {
      addIssue({ message: 'is not a parseable date with a time zone' });
      return NEVER;
    }
    return iso;
  }),
);

const Text = (max: number) => v.pipe(v.string('must be a string'), v.maxLength(max, `must be at most ${max} characters`));

/**
 * One legacy `tees/{id}` document (or a row of the old SQL table's NDJSON export), after
 * Firestore values were turned into JSON (Timestamps as ISO strings). Optional fields may also be
 * null because the SQL export writes NULL columns. Strict: a field we do not know would be lost
 * by the migration, so it makes the record odd instead of being dropped silently.
 */
export const LegacyTeeSchema = v.strictObject({
  /** Present in SQL rows (maybe as an integer); when present it must equal the document id. */
  id: v.optional(v.union([v.string(), v.pipe(v.number(), v.safeInteger())], 'must be a string or an integer')),
  name: v.pipe(
    v.string('is missing or not a string'),
    v.trim(),
    v.minLength(1, 'must not be empty'),
    v.maxLength(LIMITS.nameMaxLength, `must be at most ${LIMITS.nameMaxLength} characters`),
    v.check((s) => !/[\u0000-\u001f\u007f]/.test(s), 'must not contain control characters'),
  ),
  owner_email: v.nullish(EmailSchema),
  created_by: v.nullish(EmailSchema),
  participant_emails: v.nullish(v.pipe(v.array(EmailSchema, 'must be an array of email addresses'), v.maxLength(LIMITS.maxParticipants, `must list at most ${LIMITS.maxParticipants} participants`))),
  status: v.picklist(LEGACY_STATUSES, `must be one of ${LEGACY_STATUSES.join(', ')}`),
  created_at: LegacyDateSchema,
  updated_at: v.nullish(LegacyDateSchema),
  terminated_at: v.nullish(LegacyDateSchema),
  gcp_project_id: v.nullish(Text(128)),
  gcp_zone: v.nullish(Text(128)),
  gcp_instance_id: v.nullish(Text(128)),
  attestation_token: v.nullish(Text(64 * 1024)),
  allow_cross_party_joins: v.nullish(v.boolean('must be a boolean')),
  approval_policy: v.nullish(v.picklist(APPROVAL_POLICIES, `must be one of ${APPROVAL_POLICIES.join(', ')}`)),
});
export type LegacyTee = v.InferOutput<typeof LegacyTeeSchema>;

/**
 * A legacy VM to delete, so that it stops billing. A part the record does not name is null: the
 * operator still learns that a VM may exist.
 */
export interface LegacyVm {
  project: string | null;
  zone: string | null;
  instance: string | null;
}

/**
 * The VM named by a legacy record, read leniently from the raw data so that odd records too
 * contribute their VM to the clean-up list. Null when the record names none of the three.
 */
export function legacyVm(data: Readonly<Record<string, unknown>>): LegacyVm | null {
  const str = (key: string): string | null => {
    const value = data[key];
    return typeof value === 'string' && value.trim() !== '' ? value.trim() : null;
  };
  const vm = { project: str('gcp_project_id'), zone: str('gcp_zone'), instance: str('gcp_instance_id') };
  return vm.project === null && vm.zone === null && vm.instance === null ? null : vm;
}
