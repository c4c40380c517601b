import test from 'ava';
import { KmsSigner } from '../../../../functions/adapters/signer/kms.ts';
import { CleanroomError } from '../../../../protocol/errors.ts';

// Its own file (own process): it points the credentials at nothing.
process.env.GOOGLE_APPLICATION_CREDENTIALS = '/nonexistent/cleanroom-test-credentials.json';

test('kms signer: without credentials it fails with QUEUE_UNAVAILABLE, and the process survives (no unhandled rejection)', async (t) => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  try {
    const error = await t.throwsAsync(KmsSigner.create({ keyVersionName: 'projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1' }));
    t.true(error instanceof CleanroomError);
    t.is((error as CleanroomError).code, 'QUEUE_UNAVAILABLE');
    await new Promise((resolve) => setTimeout(resolve, 200));
    t.deepEqual(unhandled, []);
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
});
