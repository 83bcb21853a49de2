import type { Logger } from 'pino';
import type { Storage } from '../../storage/storage.js';
import type { AccessTracker } from './access-tracker.js';
import { readAccessTimes, type AccessSnapshot } from './access-state.js';
import { resolveCacheSize, type CacheSizeLimit } from './cache-size.js';
import type { DeleteGuard } from './delete-guard.js';
import { evict, type EvictionReport } from './eviction.js';
import { collect, expire, type ExpiryReport } from './expiry.js';
import { errorText } from '../../error-text.js';

/**
 * The server's cache collector: every `--gc-interval`, evicts least-recently-used blobs when the cache
 * is over `--max-cache-size` (eviction.ts) and expires what has not been used for `--cache-expiry`
 * (expiry.ts).
 *
 * Several replicas may share one storage (an S3 bucket); each runs its own collector. Who may delete what:
 * - Any collector (and `prune`) may delete any committed blob, tag record or (prune only) manifest, and
 *   only through the same single-object operations the mirror uses (DeleteObject, unlink). Nothing else
 *   is ever deleted: in-progress writes are invisible until committed (filesystem temp files under
 *   tmp/, S3 multipart uploads), so no replica can list, let alone delete, another's write.
 * - A replica writes only its own access object, `state/access/<replica-id>`; it deletes another's only
 *   after taking over its entries, when that object has not been written for a day (a replica that is
 *   gone). A live replica keeps its whole map in memory and writes it again with its next flush.
 * - A blob is protected while this process downloads or serves it (Mirror.inUse) and, across replicas,
 *   for the grace window after its last known use: its modified time (a fresh fill or re-validation by
 *   any replica) or its last access, flushed by every replica at least every minute, so a window of
 *   10 minutes covers unflushed accesses and reads that are under way elsewhere. Should a blob still
 *   vanish under a reader (S3 finishes a GET already started; a new read finds it missing), the mirror
 *   fetches it again from upstream: deleting is always safe, it can only cost a re-download.
 * - Two collectors deleting the same blob at once is harmless: deletes are idempotent.
 * - Only the collector (and prune, --verify-cache) deletes content; an upstream's 404 only drops its
 *   repository's link. Links of deleted content stay: such a link is a miss, and the next pull through
 *   that repository downloads the content again.
 */
export interface CollectorOptions {
  storage: Storage;
  log: Logger;
  /** This process's access tracker: flushed before each run, takes over stale replicas' objects. */
  tracker?: AccessTracker | undefined;
  /** Blobs being downloaded or read by this process. */
  inUse?: ((digest: string) => boolean) | undefined;
  maxSize?: CacheSizeLimit | undefined;
  /** Evict down to this percentage of the maximum. Default 90. */
  lowWaterPercent?: number | undefined;
  /** Expire tag records and blobs unused for this long. Default: no expiry. */
  expiryMs?: number | undefined;
  /** Nothing used more recently than this is deleted. Default 10 minutes. */
  graceMs?: number | undefined;
  /** Between runs when started. Default 5 minutes. */
  intervalMs?: number | undefined;
  /** The cache root, for a size in percent of its filesystem. */
  filesystemRoot?: string | undefined;
  /** Another replica's access object unwritten for this long is taken over. Default 1 day. */
  adoptAfterMs?: number | undefined;
  /** Told every run's report (the metrics' cache size gauges). */
  onCollected?: ((report: CollectionReport) => void) | undefined;
  now?: (() => number) | undefined;
}

export const DEFAULT_GC_INTERVAL_MS = 5 * 60_000;
export const DEFAULT_GC_GRACE_MS = 10 * 60_000;
export const DEFAULT_LOW_WATER_PERCENT = 90;
const DEFAULT_ADOPT_AFTER_MS = 24 * 60 * 60_000;

export interface CollectionReport {
  /** Blob bytes before the run, and after it. */
  totalBytes: number;
  finalBytes: number;
  limitBytes: number | undefined;
  targetBytes: number | undefined;
  eviction: EvictionReport | undefined;
  expiry: ExpiryReport | undefined;
}

export class Collector {
  private running: Promise<CollectionReport> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly now: () => number;

  constructor(private readonly options: CollectorOptions) {
    this.now = options.now ?? Date.now;
  }

  /** Whether a size limit or an expiry is configured (otherwise a run only reads). */
  get enabled(): boolean {
    return this.options.maxSize !== undefined || this.options.expiryMs !== undefined;
  }

  /** Runs every interval until stop(); a run still going when the next is due is not doubled. */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      this.run().catch((e: unknown) =>
        this.options.log.warn({ err: errorText(e) }, 'cache collection failed; retrying at the next interval'),
      );
    }, this.options.intervalMs ?? DEFAULT_GC_INTERVAL_MS);
    this.timer.unref();
  }

  /** Stops the timer and waits for a running collection. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined);
  }

  /** One collection now (joins the running one, if any). */
  run(): Promise<CollectionReport> {
    this.running ??= this.collect().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async collect(): Promise<CollectionReport> {
    const { storage, log, tracker } = this.options;
    if (tracker) {
      await tracker.flush().catch((e: unknown) => log.warn({ err: errorText(e) }, 'could not write access times before collecting'));
    }
    const access = await readAccessTimes(storage);
    const lastAccess = (digest: string) => {
      const shared = access.times.get(digest);
      const own = tracker?.lastAccess(digest);
      return shared === undefined ? own : own === undefined ? shared : Math.max(shared, own);
    };
    if (tracker) await this.adoptStale(access.objects);

    const guard: DeleteGuard = {
      now: this.now,
      graceMs: this.options.graceMs ?? DEFAULT_GC_GRACE_MS,
      inUse: this.options.inUse,
      recentAccess: tracker ? (d) => tracker.lastAccess(d) : undefined,
    };
    let blobs = await collect(storage.listBlobs());
    const manifestList = await collect(storage.listManifests());
    const totalBytes = blobs.reduce((sum, b) => sum + b.size, 0);

    let expiry: ExpiryReport | undefined;
    if (this.options.expiryMs !== undefined) {
      expiry = await expire({
        storage,
        cutoff: this.now() - this.options.expiryMs,
        guard,
        lastAccess,
        manifests: false,
        blobs,
        manifestList,
      });
      blobs = blobs.filter((b) => !expiry?.deletedBlobs.has(b.digest));
    }

    let eviction: EvictionReport | undefined;
    let limitBytes: number | undefined;
    let targetBytes: number | undefined;
    if (this.options.maxSize) {
      limitBytes = await resolveCacheSize(this.options.maxSize, this.options.filesystemRoot);
      targetBytes = Math.floor((limitBytes * (this.options.lowWaterPercent ?? DEFAULT_LOW_WATER_PERCENT)) / 100);
      eviction = await evict({ storage, blobs, limitBytes, targetBytes, guard, lastAccess });
      blobs = blobs.filter((b) => !eviction?.removed.has(b.digest));
      if (!eviction.reachedTarget) {
        log.warn(
          { limitBytes, targetBytes, bytes: eviction.finalBytes },
          'cache is over its size target, but what is left was used within the grace window',
        );
      }
    }

    if (tracker) {
      const stored = new Set([...blobs.map((b) => b.digest), ...manifestList.map((m) => m.digest)]);
      for (const d of expiry?.deletedManifests ?? []) stored.delete(d);
      tracker.retain((d) => stored.has(d));
    }
    const finalBytes = blobs.reduce((sum, b) => sum + b.size, 0);
    const report: CollectionReport = { totalBytes, finalBytes, limitBytes, targetBytes, eviction, expiry };
    this.options.onCollected?.(report);
    log.debug({ bytes: finalBytes, blobs: blobs.length, manifests: manifestList.length, limitBytes }, 'cache collection run');
    if ((eviction?.evicted ?? 0) > 0 || (expiry && expiry.tags + expiry.blobs > 0)) {
      log.info(
        {
          bytesBefore: totalBytes,
          bytesAfter: finalBytes,
          limitBytes,
          evicted: eviction?.evicted,
          evictedBytes: eviction?.evictedBytes,
          expiredTags: expiry?.tags,
          expiredBlobs: expiry?.blobs,
          expiredBytes: expiry?.blobBytes,
        },
        'cache collected',
      );
    }
    return report;
  }

  /** Takes over access objects of replicas that stopped writing them, so their entries are not lost. */
  private async adoptStale(objects: AccessSnapshot['objects']): Promise<void> {
    const { storage, tracker, log } = this.options;
    if (!tracker) return;
    const before = this.now() - (this.options.adoptAfterMs ?? DEFAULT_ADOPT_AFTER_MS);
    for (const { name, doc } of objects) {
      if (name === tracker.stateName || doc.updatedAt >= before) continue;
      tracker.absorb(doc.access);
      try {
        await tracker.flush();
        await storage.deleteState(name);
        log.info({ object: name, entries: doc.access.size }, 'took over the access times of a replica that stopped writing them');
      } catch (e) {
        log.warn({ object: name, err: errorText(e) }, 'could not take over a stale access object');
      }
    }
  }
}
