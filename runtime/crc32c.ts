/**
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78): the checksum Cloud KMS uses for request
 * and response integrity. Not zlib's CRC-32, whose polynomial differs. Shared by the control
 * plane's signer and the worker's key service, which may not import each other.
 */
const TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** The CRC32C of `bytes` as an unsigned 32-bit number. */
export function crc32c(bytes: Uint8Array): number {
  return crc32cExtend(0, bytes);
}

/** Continues a CRC32C over more bytes: `crc32cExtend(crc32c(a), b)` is the CRC32C of `a` then `b`. */
export function crc32cExtend(previous: number, bytes: Uint8Array): number {
  let crc = (previous ^ 0xffffffff) >>> 0;
  for (let i = 0; i < bytes.length; i++) crc = TABLE[(crc ^ bytes[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}
