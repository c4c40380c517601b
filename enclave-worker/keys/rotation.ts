import type { RewrapAllResult, SessionKeyManager } from './session-keys.ts';

/** What the rotation needs of `LocalKeyRing`: its versions, a new current one, destruction of the old. */
export interface RotatableKeyRing {
  rotate(): number;
  destroyVersion(version: number): void;
  readonly versions: number[];
}

/** Where the rotation reports (no ids of keys, no key material: counts and codes). */
export interface RotationLog {
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
}

/** One rotation's outcome, as `/status` shows it. */
export interface RotationResult extends RewrapAllResult {
  /** When it finished (ISO 8601). */
  at: string;
  /** Key ring versions destroyed by this rotation (always 0 with Cloud KMS). */
  destroyedVersions: number;
}

export interface RotateSessionKeysOptions {
  manager: Pick<SessionKeyManager, 'rewrapAll'>;
  /** The embedded stack's key ring; absent with Cloud KMS. */
  ring?: RotatableKeyRing;
  log: RotationLog;
  now?: () => Date;
}

/**
 * One session key rotation (docs/architecture.md invariant 3). With the local key ring: a new current version,
 * every session's key rewrapped under it (`rewrapAll`), and then, only if no session failed,
 * every older version destroyed, so that no copy of an older wrapping (a backup, a snapshot, a
 * soft-deleted object) unwraps any more. A failure leaves the old versions in place for the next
 * rotation: destroying them then would destroy live sessions' keys.
 *
 * With Cloud KMS (no `ring`) only the rewrap runs. The new version comes from the key's own
 * rotation schedule (set it to the rotation period), and destroying the versions that are no
 * longer primary is an operator job: it needs `cloudkms.cryptoKeyVersions.destroy`, which the
 * worker's identity must not have (a compromised worker could otherwise shred every session), and
 * it must run only after a rewrap that started after the version stopped being primary
 * succeeded. KMS then keeps a destroyed version for its scheduled-destruction duration (24 h at
 * least) before the material is gone.
 *
 * The window: a closed session's key is no longer rewrapped, so every copy of it is wrapped under
 * a version that was current while the session was open. With the local ring that version is
 * destroyed by the first successful rotation after the close: within one rotation period. With
 * KMS, where the key's schedule and this timer are not aligned, within two periods, plus the
 * operator job's lag and KMS's scheduled-destruction duration. Each failed rotation adds a period.
 */
export async function rotateSessionKeys(options: RotateSessionKeysOptions): Promise<RotationResult> {
  const { manager, ring, log } = options;
  const now = options.now ?? (() => new Date());
  const current = ring?.rotate();
  const result = await manager.rewrapAll({
    onFailure: (_sessionId, error) => log.warn('session key rewrap failed', { code: codeOf(error) }),
  });
  let destroyedVersions = 0;
  if (ring && current !== undefined && result.failed === 0) {
    for (const version of ring.versions) {
      if (version >= current) continue;
      ring.destroyVersion(version);
      destroyedVersions++;
    }
  }
  const outcome = { ...result, destroyedVersions, at: now().toISOString() };
  if (result.failed > 0) log.warn('session key rotation incomplete: old key versions kept', counts(outcome));
  else log.info('session keys rotated', counts(outcome));
  return outcome;
}

/** The rotation on a timer, and what the last run did. */
export interface RotationSchedule {
  /** The last run's outcome, or null before the first run ends; `error` when it did not finish. */
  last(): (RotationResult & { ok: boolean }) | { at: string; ok: false; error: string } | null;
  /** Stops the timer; a run in progress finishes on its own. */
  close(): void;
}

/**
 * Runs `run` every `everyMs` on an unref'd timer (it never keeps the process alive), never two at
 * once: a tick that finds the last run still going is skipped. `everyMs` is at most 2^31-1 (the
 * platform's longest timer).
 */
export function scheduleRotation(everyMs: number, run: () => Promise<RotationResult>, log: RotationLog): RotationSchedule {
  if (!Number.isInteger(everyMs) || everyMs < 1 || everyMs > 0x7fffffff) throw new TypeError('everyMs must be 1 to 2^31-1');
  let last: ReturnType<RotationSchedule['last']> = null;
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    run()
      .then((result) => (last = { ...result, ok: result.failed === 0 }))
      .catch((error: unknown) => {
        // The listing itself failed (an outage): nothing was destroyed.
        last = { at: new Date().toISOString(), ok: false, error: codeOf(error) };
        log.warn('session key rotation failed', { code: last.error });
      })
      .finally(() => (running = false));
  }, everyMs);
  timer.unref();
  return { last: () => last, close: () => clearInterval(timer) };
}

function counts(result: RotationResult): Record<string, number> {
  return { rewrapped: result.rewrapped, failed: result.failed, unreadable: result.unreadable, destroyed_versions: result.destroyedVersions };
}

function codeOf(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'INTERNAL';
}
