/**
 * Incremental SHA-256 (FIPS 180-4) in plain TypeScript. WebCrypto only hashes a whole buffer at
 * once, so a browser that streams a multi-gigabyte ciphertext (the dataset's `ciphertext_sha256`)
 * needs this; Node code may use it too, so one hash implementation serves every client.
 */

/** An incremental hash: feed bytes with `update`, read the 32-byte result once with `digest`. */
export interface Sha256 {
  /** Absorbs `bytes` (any length, any number of calls). Throws `TypeError` after `digest`. */
  update(bytes: Uint8Array): void;
  /** The 32-byte digest of everything absorbed. Callable once; throws `TypeError` after that. */
  digest(): Uint8Array;
}

const K = Uint32Array.from([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

const INITIAL_STATE = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/** Largest input the 64-bit length field can describe exactly with a JS number (2^53 - 1 bytes). */
const MAX_BYTES = Number.MAX_SAFE_INTEGER;

class Sha256State implements Sha256 {
  private readonly state = Int32Array.from(INITIAL_STATE);
  private readonly w = new Int32Array(64);
  private readonly block = new Uint8Array(64);
  private readonly blockView = new DataView(this.block.buffer);
  private buffered = 0;
  private length = 0;
  private finished = false;

  update(bytes: Uint8Array): void {
    if (this.finished) throw new TypeError('sha256: update after digest');
    if (!(bytes instanceof Uint8Array)) throw new TypeError('sha256: update takes a Uint8Array');
    if (this.length + bytes.byteLength > MAX_BYTES) throw new TypeError('sha256: input too long');
    this.length += bytes.byteLength;
    let offset = 0;
    const n = bytes.byteLength;
    if (this.buffered > 0) {
      const take = Math.min(64 - this.buffered, n);
      this.block.set(bytes.subarray(0, take), this.buffered);
      this.buffered += take;
      offset = take;
      if (this.buffered < 64) return;
      this.compress(this.blockView, 0);
      this.buffered = 0;
    }
    if (n - offset >= 64) {
      // Whole blocks are read straight from the caller's memory: no copy, no allocation per block.
      const view = new DataView(bytes.buffer, bytes.byteOffset, n);
      for (; offset + 64 <= n; offset += 64) this.compress(view, offset);
    }
    if (offset < n) {
      this.block.set(bytes.subarray(offset), 0);
      this.buffered = n - offset;
    }
  }

  digest(): Uint8Array {
    if (this.finished) throw new TypeError('sha256: digest called twice');
    this.finished = true;
    const block = this.block;
    block[this.buffered] = 0x80;
    block.fill(0, this.buffered + 1);
    if (this.buffered >= 56) {
      this.compress(this.blockView, 0);
      block.fill(0);
    }
    // The message length in bits as a 64-bit big-endian integer, split to stay within 2^53.
    this.blockView.setUint32(56, Math.floor(this.length / 0x20000000));
    this.blockView.setUint32(60, (this.length % 0x20000000) * 8);
    this.compress(this.blockView, 0);
    const out = new Uint8Array(32);
    const outView = new DataView(out.buffer);
    for (let i = 0; i < 8; i++) outView.setInt32(i * 4, this.state[i]!);
    return out;
  }

  private compress(data: DataView, offset: number): void {
    const w = this.w;
    const s = this.state;
    for (let i = 0; i < 16; i++) w[i] = data.getInt32(offset + i * 4);
    for (let i = 16; i < 64; i++) {
      const w15 = w[i - 15]!;
      const w2 = w[i - 2]!;
      const s0 = ((w15 >>> 7) | (w15 << 25)) ^ ((w15 >>> 18) | (w15 << 14)) ^ (w15 >>> 3);
      const s1 = ((w2 >>> 17) | (w2 << 15)) ^ ((w2 >>> 19) | (w2 << 13)) ^ (w2 >>> 10);
      w[i] = (w[i - 16]! + s0 + w[i - 7]! + s1) | 0;
    }
    let a = s[0]!,
      b = s[1]!,
      c = s[2]!,
      d = s[3]!,
      e = s[4]!,
      f = s[5]!,
      g = s[6]!,
      h = s[7]!;
    for (let i = 0; i < 64; i++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const ch = (e & f) ^ (~e & g);
      const t1 = (h + S1 + ch + K[i]! + w[i]!) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const maj = (a & b) ^ (a & c) ^ (b & c);
      const t2 = (S0 + maj) | 0;
      h = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) | 0;
    }
    s[0] = (s[0]! + a) | 0;
    s[1] = (s[1]! + b) | 0;
    s[2] = (s[2]! + c) | 0;
    s[3] = (s[3]! + d) | 0;
    s[4] = (s[4]! + e) | 0;
    s[5] = (s[5]! + f) | 0;
    s[6] = (s[6]! + g) | 0;
    s[7] = (s[7]! + h) | 0;
  }
}

/** A fresh incremental SHA-256. */
export function createSha256(): Sha256 {
  return new Sha256State();
}

/** SHA-256 of one buffer, synchronously (WebCrypto's digest is async only). */
export function sha256(bytes: Uint8Array): Uint8Array {
  const hash = createSha256();
  hash.update(bytes);
  return hash.digest();
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** Lowercase hex of `bytes`. */
export function toHex(bytes: Uint8Array): string {
  let out = '';
  for (let i = 0; i < bytes.length; i++) out += HEX[bytes[i]!];
  return out;
}
