import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as v from 'valibot';
import { CleanroomError } from '../../protocol/errors.ts';
import type { KeyService } from './port.ts';

/** Format byte of a wrapped key: `0x01 | version (uint32 BE) | iv (12) | ciphertext | tag (16)`. */
const FORMAT = 0x01;
const HEADER_BYTES = 5;
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** Cloud KMS's limit on plaintext and AAD; kept here so the embedded stack fails where GCP would. */
const MAX_INPUT_BYTES = 65536;
const MAX_VERSION = 0xffffffff;

const Base64Url32 = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{43}$/, 'must be 32 bytes of base64url'));
const Version = v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(MAX_VERSION));
const RingSchema = v.pipe(
  v.strictObject({
    v: v.literal(1),
    current: Version,
    versions: v.pipe(v.array(v.strictObject({ version: Version, key: Base64Url32, created_at: v.string() })), v.minLength(1), v.maxLength(10_000)),
  }),
  v.check((ring) => ring.versions.some((entry) => entry.version === ring.current), 'the current version must exist'),
  v.check((ring) => new Set(ring.versions.map((entry) => entry.version)).size === ring.versions.length, 'versions must be unique'),
);
type RingFile = v.InferOutput<typeof RingSchema>;

/**
 * The embedded stack's key service: a JSON file (mode 0600) of versioned 256-bit master keys,
 * created on first open. `wrap` is AES-256-GCM under the current version with a random 12-byte IV;
 * the output names its version, so after `rotate()` older wraps still unwrap until
 * `destroyVersion()` removes their key (crypto-shredding, docs/architecture.md invariant 3). The GCP twin is
 * `KmsKeyService`.
 *
 * WARNING: the master keys sit in a plain file readable by whoever runs the process. This proves
 * nothing about who can unwrap; it exists so the embedded stack runs the same code path.
 */
export class LocalKeyRing implements KeyService {
  readonly #path: string;
  #ring: RingFile;
  #keys: Map<number, Buffer>;

  private constructor(path: string, ring: RingFile) {
    this.#path = path;
    this.#ring = ring;
    this.#keys = keysOf(ring);
  }

  /** Opens the ring at `path`, creating it (with version 1, and its directory 0700) when absent. */
  static open(path: string): LocalKeyRing {
    return new LocalKeyRing(path, readRing(path) ?? createRing(path));
  }

  /** The version new wraps use. */
  get currentVersion(): number {
    return this.#ring.current;
  }

  /** The versions whose keys still exist, ascending. */
  get versions(): number[] {
    return [...this.#keys.keys()].sort((a, b) => a - b);
  }

  async wrap(plaintext: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    checkInput(plaintext, aad);
    const version = this.#ring.current;
    const header = headerOf(version);
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.#keys.get(version)!, iv, { authTagLength: TAG_BYTES });
    // The header is authenticated too, so the version cannot be swapped for another.
    cipher.setAAD(Buffer.concat([header, aad]));
    const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return new Uint8Array(Buffer.concat([header, iv, ciphertext, cipher.getAuthTag()]));
  }

  async unwrap(ciphertext: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    checkInput(ciphertext, aad);
    const bytes = Buffer.from(ciphertext.buffer, ciphertext.byteOffset, ciphertext.byteLength);
    if (bytes.byteLength < HEADER_BYTES + IV_BYTES + TAG_BYTES || bytes[0] !== FORMAT) throw unwrapFailed();
    const version = bytes.readUInt32BE(1);
    // Another process (a rotation by an operator) may have added versions since this one opened.
    if (!this.#keys.has(version)) this.#reload();
    const key = this.#keys.get(version);
    if (key === undefined) throw unwrapFailed();
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, bytes.subarray(HEADER_BYTES, HEADER_BYTES + IV_BYTES), { authTagLength: TAG_BYTES });
      decipher.setAAD(Buffer.concat([bytes.subarray(0, HEADER_BYTES), aad]));
      decipher.setAuthTag(bytes.subarray(bytes.byteLength - TAG_BYTES));
      const plaintext = Buffer.concat([decipher.update(bytes.subarray(HEADER_BYTES + IV_BYTES, bytes.byteLength - TAG_BYTES)), decipher.final()]);
      return new Uint8Array(plaintext);
    } catch (error) {
      throw unwrapFailed(error);
    }
  }

  /** Adds a new version and makes it current; returns its number. Older versions still unwrap. */
  rotate(): number {
    const version = Math.max(...this.versions) + 1;
    if (version > MAX_VERSION) throw new TypeError('the key ring has no version numbers left');
    this.#save({
      ...this.#ring,
      current: version,
      versions: [...this.#ring.versions, { version, key: randomBytes(32).toString('base64url'), created_at: new Date().toISOString() }],
    });
    return version;
  }

  /**
   * Removes version `version` for good: everything it wrapped no longer unwraps. The current
   * version cannot be destroyed (rotate first); an unknown version is a `TypeError`.
   */
  destroyVersion(version: number): void {
    if (version === this.#ring.current) throw new TypeError('the current version cannot be destroyed; rotate first');
    if (!this.#ring.versions.some((entry) => entry.version === version)) throw new TypeError(`version ${version} is not in the ring`);
    this.#save({ ...this.#ring, versions: this.#ring.versions.filter((entry) => entry.version !== version) });
  }

  #reload(): void {
    const ring = readRing(this.#path);
    if (ring !== null) {
      this.#ring = ring;
      this.#keys = keysOf(ring);
    }
  }

  #save(ring: RingFile): void {
    writeRing(this.#path, ring, 'replace');
    this.#ring = ring;
    this.#keys = keysOf(ring);
  }
}

function keysOf(ring: RingFile): Map<number, Buffer> {
  return new Map(ring.versions.map((entry) => [entry.version, Buffer.from(entry.key, 'base64url')]));
}

function headerOf(version: number): Buffer {
  const header = Buffer.alloc(HEADER_BYTES);
  header[0] = FORMAT;
  header.writeUInt32BE(version, 1);
  return header;
}

function checkInput(data: Uint8Array, aad: Uint8Array): void {
  if (!(data instanceof Uint8Array) || !(aad instanceof Uint8Array)) throw new TypeError('data and aad must be bytes');
  if (data.byteLength > MAX_INPUT_BYTES || aad.byteLength > MAX_INPUT_BYTES) throw new TypeError(`data and aad are limited to ${MAX_INPUT_BYTES} bytes`);
}

function unwrapFailed(cause?: unknown): CleanroomError {
  return new CleanroomError('DATASET_KEY_UNWRAP', 'the wrapped key does not unwrap', cause === undefined ? undefined : { cause });
}

function readRing(path: string): RingFile | null {
  let text: string;
  try {
    // Master keys: refuse a file anyone else could read, as ssh does with private keys.
    if ((statSync(path).mode & 0o077) !== 0) throw new Error(`${path} must not be readable by group or others (chmod 600)`);
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error(`${path} is not a key ring (not JSON)`);
  }
  const result = v.safeParse(RingSchema, parsed);
  if (!result.success) throw new Error(`${path} is not a key ring: ${result.issues[0]!.message}`);
  return result.output;
}

function createRing(path: string): RingFile {
  const ring: RingFile = { v: 1, current: 1, versions: [{ version: 1, key: randomBytes(32).toString('base64url'), created_at: new Date().toISOString() }] };
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  // Create-only: two processes opening a new ring together must not each keep a different key.
  if (writeRing(path, ring, 'create')) return ring;
  return readRing(path)!;
}

/** Writes through a temporary file, so a reader never sees half a ring. False when `create` lost a race. */
function writeRing(path: string, ring: RingFile, mode: 'create' | 'replace'): boolean {
  const temp = join(dirname(path), `.${randomBytes(8).toString('hex')}.tmp`);
  const fd = openSync(temp, 'wx', 0o600);
  try {
    writeFileSync(fd, `${JSON.stringify(ring, null, 2)}\n`);
    // Losing the ring loses every key it wrapped: it must be on disk before it replaces the old one.
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    if (mode === 'replace') {
      renameSync(temp, path);
      return true;
    }
    try {
      // link, unlike rename, refuses to replace an existing file.
      linkSync(temp, path);
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw error;
    }
  } finally {
    try {
      unlinkSync(temp);
    } catch {
      // already renamed into place
    }
  }
}
