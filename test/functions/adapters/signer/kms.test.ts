import test from 'ava';
import { KmsSigner } from '../../../../functions/adapters/signer/kms.ts';
import { CleanroomError } from '../../../../protocol/errors.ts';
import { jwkThumbprint } from '../../../../protocol/key-binding.ts';
import { signTask } from '../../../../protocol/task.ts';
import { verifyTaskJws } from '../../../../protocol/task-verify.ts';
import { taskPayload } from '../../../helpers/task.ts';
import { fakeKms } from './fake-kms.ts';

const NAME = 'projects/p/locations/europe-west1/keyRings/cleanroom/cryptoKeys/task-signing/cryptoKeyVersions/1';

test('kms signer: kid is the thumbprint of the public key KMS reports', async (t) => {
  const kms = fakeKms(NAME);
  const signer = await KmsSigner.create({ keyVersionName: NAME, client: kms.client });
  const { kty, crv, x, y } = kms.publicKey.export({ format: 'jwk' });
  t.is(signer.kid, await jwkThumbprint({ kty, crv, x, y }));
  t.like(signer.publicJwk(), { kty: 'EC', crv: 'P-256', kid: signer.kid, alg: 'ES256' });
});

test('kms signer: a KMS-signed task verifies with verifyTaskJws', async (t) => {
  const kms = fakeKms(NAME);
  const signer = await KmsSigner.create({ keyVersionName: NAME, client: kms.client });
  for (let i = 0; i < 5; i++) {
    const payload = taskPayload();
    t.deepEqual(await verifyTaskJws(await signTask(payload, signer), { keys: [signer.publicJwk()] }), payload);
  }
});

test('kms signer: sends a digest with its CRC32C, never the data', async (t) => {
  const kms = fakeKms(NAME);
  const signer = await KmsSigner.create({ keyVersionName: NAME, client: kms.client });
  await signer.sign(new TextEncoder().encode('header.payload'));
  const [request] = kms.requests as Array<Record<string, any>>;
  t.is(request!.name, NAME);
  t.is(request!.digest.sha256.length, 32);
  t.is(request!.data, undefined);
  t.is(typeof request!.digestCrc32c.value, 'number');
});

for (const fault of ['signature-crc', 'digest-unverified', 'wrong-name'] as const) {
  test(`kms signer: a reply with ${fault} is retried and the retry's signature used`, async (t) => {
    const kms = fakeKms(NAME);
    const signer = await KmsSigner.create({ keyVersionName: NAME, client: kms.client });
    kms.faults.push(fault);
    const payload = taskPayload();
    t.is((await verifyTaskJws(await signTask(payload, signer), { keys: [signer.publicJwk()] })).jti, payload.jti);
    t.is(kms.requests.length, 2);
  });
}

test('kms signer: checksums that never match give up with QUEUE_UNAVAILABLE after maxAttempts', async (t) => {
  const kms = fakeKms(NAME);
  const signer = await KmsSigner.create({ keyVersionName: NAME, client: kms.client, maxAttempts: 3 });
  kms.faults.push('signature-crc', 'signature-crc', 'signature-crc');
  const error = await t.throwsAsync(signer.sign(new Uint8Array([1])), { instanceOf: CleanroomError });
  t.is(error?.code, 'QUEUE_UNAVAILABLE');
  t.is(error?.retryAfter, 5);
  t.is(kms.requests.length, 3);
});

test('kms signer: an outage is QUEUE_UNAVAILABLE, a refusal INTERNAL', async (t) => {
  const kms = fakeKms(NAME);
  const signer = await KmsSigner.create({ keyVersionName: NAME, client: kms.client });
  kms.faults.push('unavailable');
  t.is((await t.throwsAsync(signer.sign(new Uint8Array([1])), { instanceOf: CleanroomError }))?.code, 'QUEUE_UNAVAILABLE');
  kms.faults.push('permission-denied');
  t.is((await t.throwsAsync(signer.sign(new Uint8Array([1])), { instanceOf: CleanroomError }))?.code, 'INTERNAL');
});

test('kms signer: a public key whose checksum does not match is refused', async (t) => {
  const kms = fakeKms(NAME);
  const client = { ...kms.client, getPublicKey: async () => [{ pem: kms.pem, pemCrc32c: { value: '1' } }] as [Record<string, unknown>] };
  const error = await t.throwsAsync(KmsSigner.create({ keyVersionName: NAME, client }), { instanceOf: CleanroomError });
  t.is(error?.code, 'QUEUE_UNAVAILABLE');
});

// The contract against the real service: only with credentials and a key version to use.
const realKey = process.env.CLEANROOM_KMS_KEY;
const hasCredentials = Boolean(process.env.GOOGLE_APPLICATION_CREDENTIALS);
if (realKey && hasCredentials) {
  test('kms signer (real Cloud KMS): a signed task verifies with the key KMS publishes', async (t) => {
    const signer = await KmsSigner.create({ keyVersionName: realKey });
    const payload = taskPayload();
    t.deepEqual(await verifyTaskJws(await signTask(payload, signer), { keys: [signer.publicJwk()] }), payload);
  });
} else {
  const missing = [realKey ? null : 'CLEANROOM_KMS_KEY', hasCredentials ? null : 'GOOGLE_APPLICATION_CREDENTIALS'].filter(Boolean).join(' and ');
  console.warn(`kms.test.ts: the real Cloud KMS contract test is SKIPPED: ${missing} not set`);
  test.skip(`kms signer (real Cloud KMS): SKIPPED, ${missing} not set`, () => {});
}
