import test from 'ava';
import * as v from 'valibot';
import { verifyAuditChain } from '../../../protocol/audit.ts';
import { canonicalJson, sha256Hex } from '../../../protocol/canonical-json.ts';
import { SessionRecordSchema } from '../../../functions/core/records.ts';
import { legacyVm, normalizeLegacyDate } from '../../../functions/migrate/legacy.ts';
import { archiveJson, mapChildData, mapLegacyTee, type MapResult, type MappedTee } from '../../../functions/migrate/map.ts';

const NOW = '2025-06-01T12:00:00.000Z';
const CTX = { now: NOW, source: 'firestore' as const };

const BASE = {
  name: 'Q3 revenue join',
  owner_email: 'Alice@Example.com',
  participant_emails: ['bob@example.com', 'ALICE@example.com', 'Carol@Example.com', 'bob@example.com'],
  status: 'ACTIVE',
  created_at: '2024-03-01T10:00:00.000Z',
  gcp_project_id: 'legacy-proj',
  gcp_zone: 'europe-west4-a',
  gcp_instance_id: 'tee-vm-1',
  attestation_token: 'eyJhbGciOi.legacy.token',
};

function run(data: Record<string, unknown>, options: { id?: string; subcollections?: string[] } = {}): Promise<MapResult> {
  return mapLegacyTee({ id: options.id ?? 'tee1', data, subcollections: options.subcollections ?? [] }, CTX);
}

async function ok(t: { fail(m: string): void }, data: Record<string, unknown>, options?: { id?: string; subcollections?: string[] }): Promise<MappedTee> {
  const result = await run(data, options);
  if (result.kind !== 'ok') {
    t.fail(`expected ok, got odd: ${result.reasons.join('; ')}`);
    throw new Error('unreachable');
  }
  return result;
}

test('map: a normal ACTIVE tee becomes a valid SessionRecord with the VM fields dropped', async (t) => {
  const { record, legacyStatus, vm, subcollections } = await ok(t, BASE, { subcollections: ['datasets'] });
  t.notThrows(() => v.parse(SessionRecordSchema, record));
  t.deepEqual(record, {
    id: 'tee1',
    name: 'Q3 revenue join',
    owner_email: 'alice@example.com',
    participant_emails: ['alice@example.com', 'bob@example.com', 'carol@example.com'],
    participants: [
      { email: 'alice@example.com', role: 'owner', added_at: BASE.created_at, keys: null },
      { email: 'bob@example.com', role: 'participant', added_at: BASE.created_at, keys: null },
      { email: 'carol@example.com', role: 'participant', added_at: BASE.created_at, keys: null },
    ],
    config: { allow_cross_party_joins: false, approval_policy: 'all_participants' },
    status: 'ACTIVE',
    created_at: BASE.created_at,
    updated_at: NOW,
    closed_at: null,
    version: 1,
    audit_head: record.audit_head,
    migrated_from: 'tees/tee1',
  });
  for (const dropped of ['gcp_project_id', 'gcp_zone', 'gcp_instance_id', 'attestation_token', 'terminated_at']) {
    t.false(dropped in record, dropped);
  }
  t.is(legacyStatus, 'ACTIVE');
  t.deepEqual(vm, { project: 'legacy-proj', zone: 'europe-west4-a', instance: 'tee-vm-1' });
  t.deepEqual(subcollections, ['datasets']);
});

const statusCases: Array<[string, Record<string, unknown>, 'ACTIVE' | 'CLOSED', string | null]> = [
  ['CREATING becomes ACTIVE', { status: 'CREATING' }, 'ACTIVE', null],
  ['ACTIVE stays ACTIVE', { status: 'ACTIVE', terminated_at: null }, 'ACTIVE', null],
  ['TERMINATED becomes CLOSED with closed_at from terminated_at', { status: 'TERMINATED', terminated_at: '2024-04-01T00:00:00Z' }, 'CLOSED', '2024-04-01T00:00:00.000Z'],
];
for (const [title, patch, status, closedAt] of statusCases) {
  test(`map: status ${title}`, async (t) => {
    const { record, legacyStatus } = await ok(t, { ...BASE, ...patch });
    t.is(record.status, status);
    t.is(record.closed_at, closedAt);
    t.is(legacyStatus as string, patch.status as string);
    t.notThrows(() => v.parse(SessionRecordSchema, record));
  });
}

test('map: created_by stands in for a missing owner_email, and optional fields may be null (SQL export)', async (t) => {
  const { record } = await ok(t, {
    ...BASE,
    owner_email: null,
    created_by: 'Dave@Example.com',
    participant_emails: null,
    allow_cross_party_joins: null,
    approval_policy: null,
    gcp_instance_id: null,
    attestation_token: null,
  });
  t.is(record.owner_email, 'dave@example.com');
  t.deepEqual(record.participant_emails, ['dave@example.com']);
  t.deepEqual(record.config, { allow_cross_party_joins: false, approval_policy: 'all_participants' });
});

test('map: owner_email and created_by may both be given when they agree (case aside)', async (t) => {
  const { record } = await ok(t, { ...BASE, created_by: 'alice@EXAMPLE.com' });
  t.is(record.owner_email, 'alice@example.com');
});

test('map: the legacy config wins over the defaults', async (t) => {
  const { record } = await ok(t, { ...BASE, allow_cross_party_joins: true, approval_policy: 'none' });
  t.deepEqual(record.config, { allow_cross_party_joins: true, approval_policy: 'none' });
});

test('map: the id is kept, and an id field equal to it is accepted', async (t) => {
  const { record } = await ok(t, { ...BASE, id: 'Legacy_ID-42' }, { id: 'Legacy_ID-42' });
  t.is(record.id, 'Legacy_ID-42');
  t.is(record.migrated_from, 'tees/Legacy_ID-42');
});

test('map: the audit chain starts with one session.migrated entry hashing the archived record', async (t) => {
  const { record, auditEntry } = await ok(t, BASE);
  t.like(auditEntry, { session_id: 'tee1', seq: 1, at: NOW, actor: 'migration', action: 'session.migrated' });
  t.deepEqual(auditEntry.details, {
    migrated_from: 'tees/tee1',
    source: 'firestore',
    legacy_status: 'ACTIVE',
    // The whole legacy record, VM fields included: the archive is what the hash vouches for.
    archived_record_sha256: await sha256Hex(canonicalJson(BASE)),
  });
  t.deepEqual(await verifyAuditChain([auditEntry]), { ok: true, head: record.audit_head });
  t.false(JSON.stringify(auditEntry).includes(BASE.attestation_token), 'the token never reaches the audit log');
});

test('map: the archive hash changes with any legacy field, dropped ones included', async (t) => {
  const hashOf = async (data: Record<string, unknown>) => (await ok(t, data)).auditEntry.details.archived_record_sha256;
  const base = await hashOf(BASE);
  t.not(await hashOf({ ...BASE, gcp_instance_id: 'tee-vm-2' }), base);
  t.not(await hashOf({ ...BASE, attestation_token: 'other' }), base);
  // Key order is not part of the record.
  t.is(await hashOf(Object.fromEntries(Object.entries(BASE).reverse())), base);
});

test('map: legacy dates in other zones and SQL form are normalised to the store form', async (t) => {
  const { record } = await ok(t, { ...BASE, created_at: '2024-03-01 12:30:00.123456+02', status: 'TERMINATED', terminated_at: '2024-03-02T00:00:00-05:00' });
  t.is(record.created_at, '2024-03-01T10:30:00.123Z');
  t.is(record.closed_at, '2024-03-02T05:00:00.000Z');
});

// Every odd case: the record is reported with a reason naming the field, and not migrated.
const oddCases: Array<[string, Record<string, unknown>, string, { id?: string; subcollections?: string[] }?]> = [
  ['unknown status', { status: 'ERROR' }, 'status:'],
  ['status in another case', { status: 'active' }, 'status:'],
  ['missing status', { status: undefined }, 'status: missing'],
  ['missing name', { name: undefined }, 'name: missing'],
  ['empty name', { name: '   ' }, 'name:'],
  ['name that is not a string', { name: 42 }, 'name:'],
  ['name too long', { name: 'x'.repeat(129) }, 'name:'],
  ['name with a control character', { name: 'a\u0000b' }, 'name:'],
  ['no owner at all', { owner_email: undefined }, 'owner_email: missing'],
  ['owner_email that is not an email', { owner_email: 'alice' }, 'owner_email: not a valid email'],
  ['created_by that is a uid, not an email', { owner_email: undefined, created_by: 'uid-123' }, 'created_by:'],
  ['owner_email and created_by that disagree', { created_by: 'mallory@example.com' }, 'owner_email: differs'],
  ['a bad participant email', { participant_emails: ['bob@example.com', 'not-an-email'] }, 'participant_emails.1:'],
  ['participant_emails that is not an array', { participant_emails: 'bob@example.com' }, 'participant_emails:'],
  ['too many participants', { participant_emails: Array.from({ length: 50 }, (_, i) => `p${i}@example.com`) }, 'participant_emails:'],
  ['missing created_at', { created_at: undefined }, 'created_at: missing'],
  ['unparseable created_at', { created_at: 'last tuesday' }, 'created_at:'],
  ['created_at without a time zone', { created_at: '2024-03-01T10:00:00' }, 'created_at:'],
  ['created_at on a day that does not exist', { created_at: '2024-02-30T10:00:00Z' }, 'created_at:'],
  ['created_at as a number', { created_at: 1709287200000 }, 'created_at:'],
  ['unparseable terminated_at', { status: 'TERMINATED', terminated_at: 'soon' }, 'terminated_at:'],
  ['TERMINATED without terminated_at', { status: 'TERMINATED' }, 'terminated_at: missing'],
  ['terminated_at on an ACTIVE tee', { terminated_at: '2024-04-01T00:00:00Z' }, 'terminated_at: set on a ACTIVE'],
  ['terminated_at before created_at', { status: 'TERMINATED', terminated_at: '2024-01-01T00:00:00Z' }, 'terminated_at: earlier'],
  ['unknown approval_policy', { approval_policy: 'majority' }, 'approval_policy:'],
  ['allow_cross_party_joins that is not a boolean', { allow_cross_party_joins: 'yes' }, 'allow_cross_party_joins:'],
  ['VM field of the wrong type', { gcp_zone: 7 }, 'gcp_zone:'],
  ['an unknown field (it would be lost)', { billing_account: 'X-1' }, 'billing_account: unknown field'],
  ['an id field that differs from the document id', { id: 'other' }, 'id: the id field differs'],
  ['a document id the API would refuse', {}, 'id: is not a valid session id', { id: 'has space' }],
  ['an audit subcollection (collides with the new chain)', {}, 'subcollection audit:', { subcollections: ['datasets', 'audit'] }],
  ['a value JSON cannot represent', { cpu: Number.NaN }, 'record: holds a value JSON cannot represent'],
];
for (const [title, patch, reason, options] of oddCases) {
  test(`map: odd: ${title}`, async (t) => {
    const data = Object.fromEntries(Object.entries({ ...BASE, ...patch }).filter(([, x]) => x !== undefined));
    const result = await run(data, options);
    if (result.kind !== 'odd') return t.fail('expected odd');
    t.true(
      result.reasons.some((r) => r.startsWith(reason)),
      `${result.reasons.join('; ')} should include ${reason}`,
    );
    t.is(result.id, options?.id ?? 'tee1');
  });
}

test('map: an odd record lists every reason at once and still names its VM for the clean-up', async (t) => {
  const result = await run({ ...BASE, status: 'BROKEN', name: '', owner_email: 'nope' });
  if (result.kind !== 'odd') return t.fail('expected odd');
  t.is(result.reasons.length, 3);
  t.deepEqual(result.vm, { project: 'legacy-proj', zone: 'europe-west4-a', instance: 'tee-vm-1' });
  t.false(result.reasons.join(' ').includes(BASE.attestation_token));
});

test('map: an unknown status is named in its reason', async (t) => {
  const result = await run({ ...BASE, status: 'TERMINATING' });
  t.true(result.kind === 'odd' && result.reasons.some((r) => r.includes('"TERMINATING"')));
});

test('legacyVm: a partial VM reference is kept with nulls; none at all is null', (t) => {
  t.deepEqual(legacyVm({ gcp_project_id: 'p', gcp_instance_id: 'i' }), { project: 'p', zone: null, instance: 'i' });
  t.is(legacyVm({ gcp_project_id: '', gcp_zone: null }), null);
  t.is(legacyVm({}), null);
});

const dates: Array<[string, string | null]> = [
  ['2024-03-01T10:00:00Z', '2024-03-01T10:00:00.000Z'],
  ['2024-03-01T10:00:00.5Z', '2024-03-01T10:00:00.500Z'],
  ['2024-03-01T10:00:00.123456789+00:00', '2024-03-01T10:00:00.123Z'],
  ['2024-03-01 10:00:00+0130', '2024-03-01T08:30:00.000Z'],
  ['2024-03-01T10:00Z', '2024-03-01T10:00:00.000Z'],
  ['2024-02-29T00:00:00Z', '2024-02-29T00:00:00.000Z'],
  ['2023-02-29T00:00:00Z', null],
  ['2024-13-01T00:00:00Z', null],
  ['2024-03-01T24:00:00Z', null],
  ['2024-03-01T10:00:00+15:00', null],
  ['2024-03-01', null],
  ['2024-03-01T10:00:00', null],
  ['1969-12-31T23:59:59Z', null],
  ['Fri, 01 Mar 2024 10:00:00 GMT', null],
  ['', null],
];
for (const [input, expected] of dates) {
  test(`normalizeLegacyDate: ${JSON.stringify(input)} → ${expected}`, (t) => {
    t.is(normalizeLegacyDate(input), expected);
  });
}

test('mapChildData: tee_id is renamed to session_id and nothing else changes', (t) => {
  const when = new Date(0);
  t.deepEqual(mapChildData<unknown>({ tee_id: 'tee1', rows: 3, when }), { ok: true, data: { session_id: 'tee1', rows: 3, when } });
  t.deepEqual(mapChildData({ rows: 3 }), { ok: true, data: { rows: 3 } });
  t.deepEqual(mapChildData({ tee_id: 'tee1', session_id: 'tee1' }), { ok: true, data: { session_id: 'tee1' } });
  t.false(mapChildData({ tee_id: 'tee1', session_id: 'tee2' }).ok);
});

test('archiveJson: matches canonicalJson on integer data and also takes any finite number', (t) => {
  const value = { b: [1, 'x', null, true], a: { d: -3, c: 'é' } };
  t.is(archiveJson(value), canonicalJson(value));
  t.is(archiveJson({ load: 0.25, big: 1e21, neg: -0 }), '{"big":1e+21,"load":0.25,"neg":0}');
  t.throws(() => archiveJson({ x: Number.POSITIVE_INFINITY }), { instanceOf: TypeError });
  t.throws(() => archiveJson({ x: new Date(0) }), { instanceOf: TypeError });
});
