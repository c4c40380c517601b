import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { CleanroomError, type ErrorCode } from '../../../protocol/errors.ts';
import { sessionKeyAad, type KeyService } from '../../../enclave-worker/keys/port.ts';

/** A key service under test and how to dispose of it. */
export interface KeyServiceUnderTest {
  service: KeyService;
  teardown(): Promise<void>;
}

/** Asserts `promise` rejects with a `CleanroomError` of `code`. */
export async function rejectsWithCode(t: ExecutionContext, promise: Promise<unknown>, code: ErrorCode, message?: string): Promise<void> {
  const error = await t.throwsAsync(promise, undefined, message);
  t.true(error instanceof CleanroomError, `expected a CleanroomError, got ${String(error)}`);
  t.is((error as CleanroomError | undefined)?.code, code, message);
}

/** A session private key as the worker wraps it: a small JWK. */
function sessionKeyPlaintext(): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({ kty: 'EC', crv: 'P-256', d: randomBytes(32).toString('base64url') }));
}

/**
 * Registers the `KeyService` contract as ava tests titled `${name}: ...`: what the worker relies
 * on when it stores a session key wrapped (docs/architecture.md invariant 3).
 */
export function keyServiceContract(name: string, setup: () => Promise<KeyServiceUnderTest>, options: { serial?: boolean } = {}): void {
  const withService = (title: string, body: (t: ExecutionContext, service: KeyService) => Promise<void>) => {
    (options.serial ? test.serial : test)(`${name}: ${title}`, async (t) => {
      const { service, teardown } = await setup();
      try {
        await body(t, service);
      } finally {
        await teardown();
      }
    });
  };

  withService('wrap then unwrap with the same AAD returns the plaintext', async (t, service) => {
    for (const plaintext of [sessionKeyPlaintext(), randomBytes(32), randomBytes(1), randomBytes(4096)]) {
      const aad = sessionKeyAad(crypto.randomUUID(), 1);
      const wrapped = await service.wrap(plaintext, aad);
      t.true(wrapped instanceof Uint8Array);
      // (Long enough that a chance match is impossible.)
      if (plaintext.byteLength >= 16) t.false(Buffer.from(wrapped).includes(Buffer.from(plaintext)), 'the plaintext does not appear in the wrap');
      t.deepEqual(new Uint8Array(await service.unwrap(wrapped, aad)), new Uint8Array(plaintext));
    }
  });

  withService('a wrap bound to one session or epoch does not unwrap for another: DATASET_KEY_UNWRAP', async (t, service) => {
    const session = crypto.randomUUID();
    const wrapped = await service.wrap(sessionKeyPlaintext(), sessionKeyAad(session, 1));
    await rejectsWithCode(t, service.unwrap(wrapped, sessionKeyAad(crypto.randomUUID(), 1)), 'DATASET_KEY_UNWRAP', 'another session');
    await rejectsWithCode(t, service.unwrap(wrapped, sessionKeyAad(session, 2)), 'DATASET_KEY_UNWRAP', 'another epoch');
    await rejectsWithCode(t, service.unwrap(wrapped, new Uint8Array(0)), 'DATASET_KEY_UNWRAP', 'no AAD');
    // Still fine with the right one.
    t.is((await service.unwrap(wrapped, sessionKeyAad(session, 1))).byteLength > 0, true);
  });

  withService('a changed ciphertext does not unwrap: DATASET_KEY_UNWRAP', async (t, service) => {
    const aad = sessionKeyAad(crypto.randomUUID(), 1);
    const wrapped = await service.wrap(sessionKeyPlaintext(), aad);
    const positions = [0, 1, Math.floor(wrapped.byteLength / 2), wrapped.byteLength - 1];
    for (const position of positions) {
      const tampered = new Uint8Array(wrapped);
      tampered[position]! ^= 0x01;
      await rejectsWithCode(t, service.unwrap(tampered, aad), 'DATASET_KEY_UNWRAP', `bit flipped at ${position}`);
    }
    await rejectsWithCode(t, service.unwrap(wrapped.subarray(0, wrapped.byteLength - 1), aad), 'DATASET_KEY_UNWRAP', 'truncated');
    await rejectsWithCode(t, service.unwrap(new Uint8Array([...wrapped, 0]), aad), 'DATASET_KEY_UNWRAP', 'extended');
    await rejectsWithCode(t, service.unwrap(new Uint8Array(0), aad), 'DATASET_KEY_UNWRAP', 'empty');
    await rejectsWithCode(t, service.unwrap(randomBytes(wrapped.byteLength), aad), 'DATASET_KEY_UNWRAP', 'random bytes');
  });

  withService('two wraps of the same plaintext and AAD differ, and both unwrap', async (t, service) => {
    const plaintext = sessionKeyPlaintext();
    const aad = sessionKeyAad(crypto.randomUUID(), 1);
    const [a, b] = [await service.wrap(plaintext, aad), await service.wrap(plaintext, aad)];
    t.notDeepEqual(new Uint8Array(a), new Uint8Array(b));
    t.deepEqual(new Uint8Array(await service.unwrap(a, aad)), new Uint8Array(plaintext));
    t.deepEqual(new Uint8Array(await service.unwrap(b, aad)), new Uint8Array(plaintext));
  });

  withService('wraps under concurrent use stay independent', async (t, service) => {
    const items = Array.from({ length: 10 }, () => ({ plaintext: randomBytes(48), aad: sessionKeyAad(crypto.randomUUID(), 1) }));
    const wrapped = await Promise.all(items.map((item) => service.wrap(item.plaintext, item.aad)));
    const unwrapped = await Promise.all(wrapped.map((w, i) => service.unwrap(w, items[i]!.aad)));
    unwrapped.forEach((plaintext, i) => t.deepEqual(new Uint8Array(plaintext), new Uint8Array(items[i]!.plaintext)));
  });
}
