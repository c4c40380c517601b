import { exportJWK, generateKeyPair, type JWK } from 'jose';
import { jwkThumbprint } from '../../protocol/key-binding.ts';
import { TASK_AUDIENCE, TASK_ISSUER, TASK_TYP, signTask, type TaskPayload, type TaskSigner } from '../../protocol/task.ts';

/** A valid task payload issued at `now` (seconds), expiring an hour later; fields overridable. */
export function taskPayload(overrides: Partial<TaskPayload> = {}, now = Math.floor(Date.now() / 1000)): TaskPayload {
  return {
    v: 1,
    kind: 'execute_query',
    iss: TASK_ISSUER,
    aud: TASK_AUDIENCE,
    jti: crypto.randomUUID(),
    iat: now,
    exp: now + 3600,
    session_id: crypto.randomUUID(),
    query_id: crypto.randomUUID(),
    attempt: 1,
    sql: 'SELECT 1',
    recipients: ['alice@example.com'],
    ...overrides,
  };
}

/** A task-signing key generated at test time: its signer, public JWK and raw key pair. */
export interface TestTaskKey {
  signer: TaskSigner;
  publicJwk: JWK;
  privateKey: CryptoKey;
  /** Signs any header and payload bytes, for forging headers a real signer never writes. */
  signRaw(header: Record<string, unknown>, payload: unknown): Promise<string>;
}

export async function testTaskKey(): Promise<TestTaskKey> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const { kty, crv, x, y } = await exportJWK(publicKey);
  const kid = await jwkThumbprint({ kty, crv, x, y });
  const signer: TaskSigner = {
    kid,
    async sign(input) {
      return new Uint8Array(await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, privateKey, input as Uint8Array<ArrayBuffer>));
    },
  };
  // Built by hand: jose refuses to sign some of the headers tests need to forge.
  const signRaw = async (header: Record<string, unknown>, payload: unknown) => {
    const enc = (bytes: string) => Buffer.from(bytes).toString('base64url');
    const input = `${enc(JSON.stringify(header))}.${enc(typeof payload === 'string' ? payload : JSON.stringify(payload))}`;
    return `${input}.${Buffer.from(await signer.sign(new TextEncoder().encode(input))).toString('base64url')}`;
  };
  return { signer, publicJwk: { kty, crv, x, y, kid, alg: 'ES256', use: 'sig' }, privateKey, signRaw };
}

/** A signed task for `payload` (a fresh valid one by default). */
export async function signedTask(key: TestTaskKey, payload: TaskPayload = taskPayload()): Promise<string> {
  return signTask(payload, key.signer);
}

export { TASK_TYP };
