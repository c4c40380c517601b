/**
 * Exact-length reads over a byte stream that arrives in arbitrary slices (a record may span many
 * input chunks, or many records one chunk). Holds at most one input chunk plus the buffer being
 * filled, so memory is bounded by the largest read.
 */
export class ByteReader {
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private chunk: Uint8Array = new Uint8Array(0);
  private position = 0;
  private done = false;
  private scratch: Uint8Array = new Uint8Array(0);

  constructor(stream: ReadableStream<Uint8Array>) {
    this.reader = stream.getReader();
  }

  /** Fetches the next non-empty input chunk; false at the end of the input. */
  private async fill(): Promise<boolean> {
    while (!this.done && this.position >= this.chunk.byteLength) {
      const { done, value } = await this.reader.read();
      if (done) {
        this.done = true;
        break;
      }
      if (!(value instanceof Uint8Array)) throw new TypeError('a byte stream must yield Uint8Array chunks');
      this.chunk = value;
      this.position = 0;
    }
    return this.position < this.chunk.byteLength;
  }

  /**
   * The next `n` bytes, or fewer only if the input ends first. A view into the input when one
   * chunk holds them all (no copy), else a fresh array.
   */
  async read(n: number): Promise<Uint8Array> {
    return this.readInto(n, false);
  }

  /**
   * Like {@link read}, but the bytes may live in a buffer the next read overwrites: for bytes that
   * are consumed at once (a record's ciphertext, copied by the cipher). Saves allocating and
   * faulting in a fresh megabyte per record.
   */
  async readTransient(n: number): Promise<Uint8Array> {
    return this.readInto(n, true);
  }

  private async readInto(n: number, transient: boolean): Promise<Uint8Array> {
    if (!(await this.fill())) return new Uint8Array(0);
    if (this.chunk.byteLength - this.position >= n) {
      const out = this.chunk.subarray(this.position, this.position + n);
      this.position += n;
      return out;
    }
    if (transient && this.scratch.byteLength < n) this.scratch = new Uint8Array(n);
    const out = transient ? this.scratch.subarray(0, n) : new Uint8Array(n);
    let filled = 0;
    while (filled < n && (await this.fill())) {
      const take = Math.min(n - filled, this.chunk.byteLength - this.position);
      out.set(this.chunk.subarray(this.position, this.position + take), filled);
      this.position += take;
      filled += take;
    }
    return filled === n ? out : out.subarray(0, filled);
  }

  /** True when no byte is left. */
  async atEnd(): Promise<boolean> {
    return !(await this.fill());
  }

  /** Stops the input (on failure, or when the consumer cancels). Never throws. */
  async cancel(reason?: unknown): Promise<void> {
    this.done = true;
    await this.reader.cancel(reason).catch(() => undefined);
  }
}
