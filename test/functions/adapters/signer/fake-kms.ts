import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import type { KmsSigningClient } from '../../../../functions/adapters/signer/kms.ts';
import { crc32c } from '../../../../runtime/crc32c.ts';

// P-256 in plain BigInt arithmetic. Cloud KMS signs a digest it is given; node:crypto and
// WebCrypto only sign messages (they hash first), so the fake signs the digest itself.
const P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
const N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const G: Point = [0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296n, 0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5n];
type Point = [bigint, bigint] | null;

const mod = (a: bigint, m: bigint) => ((a % m) + m) % m;
function inverse(a: bigint, m: bigint): bigint {
  let [r0, r1, s0, s1] = [mod(a, m), m, 1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1, s0, s1] = [r1, r0 - q * r1, s1, s0 - q * s1];
  }
  return mod(s0, m);
}
function add(a: Point, b: Point): Point {
  if (a === null) return b;
  if (b === null) return a;
  if (a[0] === b[0] && mod(a[1] + b[1], P) === 0n) return null;
  const l = a[0] === b[0] ? mod(3n * a[0] * a[0] - 3n, P) * inverse(2n * a[1], P) : mod(b[1] - a[1], P) * inverse(b[0] - a[0], P);
  const x = mod(l * l - a[0] - b[0], P);
  return [x, mod(l * (a[0] - x) - a[1], P)];
}
function multiply(k: bigint, point: Point): Point {
  let result: Point = null;
  for (let bit = 255n; bit >= 0n; bit--) {
    result = add(result, result);
    if ((k >> bit) & 1n) result = add(result, point);
  }
  return result;
}
const toBig = (bytes: Uint8Array) => BigInt(`0x${Buffer.from(bytes).toString('hex') || '0'}`);
function derInteger(value: bigint): Buffer {
  let hex = value.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  let bytes = Buffer.from(hex, 'hex');
  if (bytes[0]! & 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes]);
  return Buffer.concat([Buffer.from([0x02, bytes.length]), bytes]);
}

/** ECDSA P-256 over a precomputed SHA-256 digest, DER-encoded, as Cloud KMS answers. */
export function signDigestDer(privateKey: KeyObject, digest: Uint8Array): Buffer {
  const d = toBig(Buffer.from(privateKey.export({ format: 'jwk' }).d!, 'base64url'));
  const z = toBig(digest);
  for (;;) {
    const k = mod(toBig(crypto.getRandomValues(new Uint8Array(32))), N);
    if (k === 0n) continue;
    const r = mod(multiply(k, G)![0], N);
    const s = mod(inverse(k, N) * (z + r * d), N);
    if (r === 0n || s === 0n) continue;
    const body = Buffer.concat([derInteger(r), derInteger(s)]);
    return Buffer.concat([Buffer.from([0x30, body.length]), body]);
  }
}

/** A fault the fake injects into the next call. */
export type KmsFault = 'signature-crc' | 'digest-unverified' | 'wrong-name' | 'unavailable' | 'permission-denied';

/**
 * A KMS client with just `asymmetricSign` and `getPublicKey`, backed by a real local P-256 key,
 * checking the request as KMS does and answering with the same fields and checksums.
 */
export function fakeKms(keyVersionName: string) {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const faults: KmsFault[] = [];
  const requests: unknown[] = [];
  const fail = (code: number) => Object.assign(new Error(`fake KMS error ${code}`), { code });
  const client: KmsSigningClient = {
    async getPublicKey(request) {
      if (request.name !== keyVersionName) throw fail(5);
      return [{ pem, pemCrc32c: { value: String(crc32c(Buffer.from(pem))) }, algorithm: 'EC_SIGN_P256_SHA256', name: keyVersionName }];
    },
    async asymmetricSign(request) {
      requests.push(request);
      const fault = faults.shift();
      if (fault === 'unavailable') throw fail(14);
      if (fault === 'permission-denied') throw fail(7);
      if (request.name !== keyVersionName) throw fail(5);
      if (request.data != null) throw fail(3); // digest or data, never both
      const digest = request.digest?.sha256;
      if (!(digest instanceof Uint8Array) || digest.length !== 32) throw fail(3);
      const verified = Number(request.digestCrc32c?.value) === crc32c(digest);
      if (!verified) throw fail(3); // KMS refuses a digest whose checksum does not match
      const signature = signDigestDer(privateKey, digest);
      const signatureCrc = fault === 'signature-crc' ? (crc32c(signature) ^ 1) >>> 0 : crc32c(signature);
      return [
        {
          signature,
          signatureCrc32c: { value: String(signatureCrc) },
          verifiedDigestCrc32c: fault !== 'digest-unverified',
          name: fault === 'wrong-name' ? `${keyVersionName}-other` : keyVersionName,
          protectionLevel: 'HSM',
        },
      ];
    },
  };
  return { client, publicKey, pem, faults, requests };
}
