/**
 * A clock and timers that move only when told to, for back-off, deadlines and leases. Real I/O
 * (a local HTTP server) still runs on real time: `tick` advances the fake clock a step and then
 * yields a few real milliseconds so sockets make progress.
 */
export class FakeTime {
  #now: number;
  #nextId = 1;
  readonly #timers = new Map<number, { at: number; callback: () => void }>();

  constructor(start = Date.parse('2030-01-01T00:00:00Z')) {
    this.#now = start;
  }

  readonly clock = { now: () => new Date(this.#now) };

  readonly timers = {
    setTimeout: (callback: () => void, ms: number): unknown => {
      const id = this.#nextId++;
      this.#timers.set(id, { at: this.#now + Math.max(0, ms), callback });
      return id;
    },
    clearTimeout: (handle: unknown): void => {
      this.#timers.delete(handle as number);
    },
  };

  nowMs(): number {
    return this.#now;
  }

  /** Moves the clock forward by `ms`, firing due timers in order. */
  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      let next: [number, { at: number; callback: () => void }] | undefined;
      for (const entry of this.#timers) if (entry[1].at <= end && (!next || entry[1].at < next[1].at)) next = entry;
      if (!next) break;
      this.#timers.delete(next[0]);
      this.#now = Math.max(this.#now, next[1].at);
      next[1].callback();
    }
    this.#now = end;
  }

  /** Advances `ms` of fake time, then lets real I/O run for `realMs`. */
  async tick(ms: number, realMs = 3): Promise<void> {
    this.advance(ms);
    await new Promise((resolve) => setTimeout(resolve, realMs));
  }
}
