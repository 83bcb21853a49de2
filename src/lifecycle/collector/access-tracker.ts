import type { Logger } from 'pino';
import type { AccessRecorder } from '../../proxy/events.js';
import type { Storage } from '../../storage/storage.js';
import { accessStateName, decodeAccess, encodeAccess, mergeAccess } from './access-state.js';
import { errorText } from '../../error-text.js';

export interface AccessTrackerOptions {
  storage: Storage;
  /** Names this process's object, `access/<replicaId>`: unique per replica sharing the storage. */
  replicaId: string;
  log: Logger;
  /** How often recorded accesses are written. Default 60 s. */
  flushIntervalMs?: number | undefined;
  now?: (() => number) | undefined;
}

export const DEFAULT_FLUSH_INTERVAL_MS = 60_000;

/**
 * Remembers when each blob and manifest was last served by this process. record() is one Map.set on
 * the request path; nothing is written per request. flush() (every minute, and at shutdown) writes the
 * whole of this replica's map to its own state object, so replicas never write the same object and a
 * flush is one atomic put. Whatever was not flushed when a process dies is lost: at most one interval
 * of access times, which the collector's grace window covers.
 */
export class AccessTracker implements AccessRecorder {
  readonly replicaId: string;
  readonly stateName: string;
  /** Accesses since the last flush. */
  private pending = new Map<string, number>();
  /** Everything this replica knows it served (what its object holds after the next flush). */
  private readonly known = new Map<string, number>();
  /** `known` changed other than through `pending` (absorb, retain, a failed write). */
  private dirty = false;
  /** Whether the object a previous process with this id wrote has been merged in. */
  private loaded = false;
  private timer: NodeJS.Timeout | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly now: () => number;
  private readonly intervalMs: number;

  constructor(private readonly options: AccessTrackerOptions) {
    this.replicaId = options.replicaId;
    this.stateName = accessStateName(options.replicaId);
    this.now = options.now ?? Date.now;
    this.intervalMs = options.flushIntervalMs ?? DEFAULT_FLUSH_INTERVAL_MS;
  }

  record(digest: string): void {
    this.pending.set(digest, this.now());
  }

  /** This process's latest record of the digest, flushed or not. */
  lastAccess(digest: string): number | undefined {
    return this.pending.get(digest) ?? this.known.get(digest);
  }

  /** Flushes every interval until stop(). The timer does not keep the process alive. */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      this.flush().catch((e: unknown) =>
        this.options.log.warn({ err: errorText(e), object: this.stateName }, 'could not write access times; retrying later'),
      );
    }, this.intervalMs);
    this.timer.unref();
  }

  /** Stops the timer and writes what is left. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.flush();
  }

  /** Writes this replica's object if anything changed; true when it wrote. Flushes run one at a time. */
  flush(): Promise<boolean> {
    const run = this.chain.then(() => this.flushNow());
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Takes over entries (from the object of a replica that is gone): they are written with the next flush. */
  absorb(times: ReadonlyMap<string, number>): void {
    if (times.size === 0) return;
    mergeAccess(this.known, times);
    this.dirty = true;
  }

  /** Forgets digests for which `keep` is false (no longer stored), so the object does not grow forever. */
  retain(keep: (digest: string) => boolean): void {
    for (const digest of [...this.known.keys()]) {
      if (!keep(digest)) {
        this.known.delete(digest);
        this.dirty = true;
      }
    }
  }

  private async flushNow(): Promise<boolean> {
    const { storage } = this.options;
    if (!this.loaded) {
      const bytes = await storage.getState(this.stateName);
      const doc = bytes ? decodeAccess(bytes) : undefined;
      if (doc) mergeAccess(this.known, doc.access);
      this.loaded = true;
    }
    if (this.pending.size === 0 && !this.dirty) return false;
    mergeAccess(this.known, this.pending);
    this.pending = new Map();
    this.dirty = true;
    await storage.putState(this.stateName, encodeAccess(this.replicaId, this.now(), this.known));
    this.dirty = false;
    return true;
  }
}
