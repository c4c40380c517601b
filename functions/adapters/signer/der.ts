/**
 * Converts a DER `ECDSA-Sig-Value` (`SEQUENCE { r INTEGER, s INTEGER }`, what Cloud KMS returns
 * for `EC_SIGN_P256_SHA256`) into the fixed-width `r || s` that JWS ES256 needs: each integer
 * loses its sign-padding 0x00 and is left-padded to `size` bytes. Anything that is not exactly
 * such a structure throws a `TypeError`: a malformed signature from our own key service is a bug.
 */
export function derToJoseSignature(der: Uint8Array, size = 32): Uint8Array {
  let offset = 0;
  const byte = (): number => {
    if (offset >= der.length) throw new TypeError('DER signature is truncated');
    return der[offset++]!;
  };
  const length = (): number => {
    const first = byte();
    if (first < 0x80) return first;
    // Long form: only 0x81 can occur for these sizes (a sequence of two <= 33-byte integers).
    if (first !== 0x81) throw new TypeError('DER length form not supported');
    const value = byte();
    if (value < 0x80) throw new TypeError('DER length is not minimally encoded');
    return value;
  };
  const integer = (): Uint8Array => {
    if (byte() !== 0x02) throw new TypeError('DER integer expected');
    const len = length();
    if (len === 0 || offset + len > der.length) throw new TypeError('DER integer has a bad length');
    let value = der.subarray(offset, offset + len);
    offset += len;
    if (value[0]! & 0x80) throw new TypeError('DER integer is negative');
    // A leading 0x00 only keeps a high bit from reading as a sign; strip every leading zero.
    while (value.length > 1 && value[0] === 0) value = value.subarray(1);
    if (value.length > size) throw new TypeError('DER integer is too large for the curve');
    const padded = new Uint8Array(size);
    padded.set(value, size - value.length);
    return padded;
  };

  if (byte() !== 0x30) throw new TypeError('DER sequence expected');
  const sequenceLength = length();
  if (offset + sequenceLength !== der.length) throw new TypeError('DER sequence length does not match');
  const r = integer();
  const s = integer();
  if (offset !== der.length) throw new TypeError('DER signature has trailing bytes');
  const out = new Uint8Array(size * 2);
  out.set(r, 0);
  out.set(s, size);
  return out;
}
