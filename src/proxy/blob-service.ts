import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { OciError, isOciError } from '../oci/errors.js';
import type { ResolvedRepository } from '../resolve/resolver.js';
import type { BlobStat, ByteRange, Storage } from '../storage/storage.js';
import type { UpstreamPool } from '../upstream/upstream-pool.js';
import { pipeline } from 'node:stream';
import { BlobFill, errMessage, SpoolUnavailableError, type FillSource } from './blob-fill.js';
import { STALE_WARNING, type BlobHandle } from './blob-handle.js';
import type { AccessRecorder, CacheOutcome, ProxyObserver } from './events.js';
import { verifyingStream } from './verify-stream.js';

/** How long blobs stream uncached after the local disk refused a write. */
const STORAGE_BYPASS_MS = 30_000;

export interface BlobServiceOptions {
  storage: Storage;
  upstreams: UpstreamPool;
  spoolDir: string;
  log: Logger;
  observer?: ProxyObserver | undefined;
  /** Rehash cached blobs as they are served; a mismatch drops the blob (the client's transfer is cut). */
  checkCacheDigest?: boolean;
  /** Answer GETs of cached blobs with a redirect to the storage, when it can presign URLs. */
  redirectSeconds?: number | undefined;
  /** Never contact upstreams: serve cached blobs whatever their age, BLOB_UNKNOWN for the rest. */
  offline?: boolean | undefined;
  /** Told of every blob served (the cache lifecycle's access times). */
  access?: AccessRecorder | undefined;
  now?: () => number;
}

interface CachedEntry {
  stat: BlobStat;
  outcome: CacheOutcome;
  warning: string | undefined;
}

/**
 * Blob cache policy: serve from storage when present (re-checking upstream after blob_invalidation_time),
 * otherwise join or start the single fill for that digest.
 */
export class BlobService {
  private readonly inflight = new Map<string, Promise<BlobFill>>();
  /** Until then, uncached blobs bypass the local disk (it refused a write: full, read-only, failing). */
  private bypassUntil = 0;
  /** Cached blobs with an open handle or stream, by digest: the collector must not delete them. */
  private readonly readers = new Map<string, number>();
  private readonly now: () => number;

  constructor(private readonly options: BlobServiceOptions) {
    this.now = options.now ?? Date.now;
  }

  /** Size of a blob for HEAD, without downloading it. */
  async head(repo: ResolvedRepository, digest: string): Promise<{ size: number | undefined; outcome: CacheOutcome; warning: string | undefined }> {
    const cached = await this.cached(repo, digest);
    if (cached) {
      this.options.access?.record(digest);
      return { size: cached.stat.size, outcome: cached.outcome, warning: cached.warning };
    }
    const running = this.inflight.get(digest);
    if (running) {
      const fill = await running;
      return { size: fill.size, outcome: 'coalesced', warning: undefined };
    }
    if (this.options.offline) throw blobUnknown(digest);
    const client = this.options.upstreams.client(repo.upstream);
    const found = await client.headBlob(repo.repository, digest);
    if (!found) throw new OciError('BLOB_UNKNOWN', 'blob unknown to registry', { detail: { digest } });
    return { size: found.size, outcome: 'miss', warning: undefined };
  }

  async open(repo: ResolvedRepository, digest: string): Promise<BlobHandle> {
    const cached = await this.cached(repo, digest);
    if (cached) return this.cachedHandle(repo, digest, cached);
    return this.openUncached(repo, digest);
  }

  /** Whether a blob is being downloaded or served from the cache right now (the collector skips it). */
  inUse(digest: string): boolean {
    return this.inflight.has(digest) || this.readers.has(digest);
  }

  /** Waits for every running download (graceful shutdown). */
  async drain(): Promise<void> {
    const fills = await Promise.allSettled([...this.inflight.values()]);
    await Promise.all(fills.map((f) => (f.status === 'fulfilled' ? f.value.settled() : undefined)));
  }

  /** Resolves when the running download of the digest, if any, has finished (stored it or failed). */
  async settled(digest: string): Promise<void> {
    const fill = await this.inflight.get(digest)?.catch(() => undefined);
    await fill?.settled();
  }

  get inflightCount(): number {
    return this.inflight.size;
  }

  /** The downloads running now, for the status page to read; a pending promise is still waiting for upstream's answer. */
  inflightDownloads(): Iterable<Promise<BlobFill>> {
    return this.inflight.values();
  }

  /** Joins the running fill for the digest or starts one. */
  private async openUncached(repo: ResolvedRepository, digest: string): Promise<BlobHandle> {
    const running = this.inflight.get(digest);
    if (running) return this.joinOrBypass(repo, digest, running);
    if (this.options.offline) throw blobUnknown(digest);
    if (this.now() < this.bypassUntil) return this.bypass(repo, digest);
    return this.startFill(repo, digest);
  }

  /** Counts a reader of a cached blob until the returned release is called (once is enough). */
  private hold(digest: string): () => void {
    this.readers.set(digest, (this.readers.get(digest) ?? 0) + 1);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      const n = (this.readers.get(digest) ?? 1) - 1;
      if (n <= 0) this.readers.delete(digest);
      else this.readers.set(digest, n);
    };
  }

  private async startFill(repo: ResolvedRepository, digest: string): Promise<BlobHandle> {
    const { storage, spoolDir, log, observer } = this.options;
    const client = this.options.upstreams.client(repo.upstream);
    const request = client.getBlob(repo.repository, digest).then((source) => {
      observer?.fillStarted?.(repo.namespace);
      return source;
    });
    const starting = BlobFill.start({ digest, namespace: repo.namespace, storage, spoolDir, log, observer }, request);
    this.inflight.set(digest, starting);
    let fill: BlobFill;
    try {
      fill = await starting;
    } catch (e) {
      if (this.inflight.get(digest) === starting) this.inflight.delete(digest);
      if (!(e instanceof SpoolUnavailableError)) throw e;
      // Local disk trouble: this client streams the body it already has, uncached.
      observer?.storageError?.('spool');
      log.warn({ digest, err: e.message }, 'cannot spool blob; streaming it uncached');
      return directHandle(digest, e.source);
    }
    void fill.settled().then(() => {
      if (this.inflight.get(digest) === starting) this.inflight.delete(digest);
      if (fill.localWriteFailed) {
        // The disk is full or refuses writes: for a while, stream blobs straight from upstream.
        this.bypassUntil = this.now() + STORAGE_BYPASS_MS;
        log.warn({ digest, seconds: STORAGE_BYPASS_MS / 1000 }, 'local disk refused a write; serving blobs uncached for a while');
      }
      // Stored now: the blob's last use (to the millisecond; S3 LastModified has whole seconds).
      if (fill.stored) this.options.access?.record(digest);
    });
    return fillHandle(fill, 'miss');
  }

  /** A follower whose leader could not spool fetches its own uncached stream. */
  private async joinOrBypass(repo: ResolvedRepository, digest: string, running: Promise<BlobFill>): Promise<BlobHandle> {
    try {
      const fill = await running;
      if (fill.failure) {
        // Already failed, and only not yet cleaned up: this request starts afresh instead of sharing the failure.
        if (this.inflight.get(digest) === running) this.inflight.delete(digest);
        return this.openUncached(repo, digest);
      }
      return fillHandle(fill, 'coalesced');
    } catch (e) {
      if (!(e instanceof SpoolUnavailableError)) throw e;
      return this.bypass(repo, digest);
    }
  }

  /** An uncached stream of its own for this client, straight from upstream. */
  private async bypass(repo: ResolvedRepository, digest: string): Promise<BlobHandle> {
    const source = await this.options.upstreams.client(repo.upstream).getBlob(repo.repository, digest);
    return directHandle(digest, source);
  }

  private async cachedHandle(repo: ResolvedRepository, digest: string, entry: CachedEntry): Promise<BlobHandle> {
    const { storage } = this.options;
    // Served from the cache: its last access (a download counts when it is stored, see startFill).
    this.options.access?.record(digest);
    let redirect: string | undefined;
    if (this.options.redirectSeconds && storage.blobUrl) {
      redirect = await storage.blobUrl(digest, this.options.redirectSeconds).catch(() => undefined);
    }
    const release = this.hold(digest);
    return {
      size: entry.stat.size,
      outcome: entry.outcome,
      warning: entry.warning,
      rangeable: true,
      redirect,
      open: async (range?: ByteRange) => {
        let stream: Readable | undefined;
        try {
          stream = await storage.readBlob(digest, range);
        } catch (e) {
          release();
          throw e;
        }
        if (!stream) {
          // Deleted since the stat (evicted by another replica, pruned): fetch it again, transparently.
          release();
          return this.refetch(repo, digest, range);
        }
        const out = !this.options.checkCacheDigest || range ? stream : stream.pipe(verifyingStream(digest, () => this.dropCorrupt(digest)));
        out.once('close', release);
        return out;
      },
      dispose: release,
    };
  }

  private async refetch(repo: ResolvedRepository, digest: string, range: ByteRange | undefined): Promise<Readable> {
    const handle = await this.openUncached(repo, digest);
    if (range && !handle.rangeable) {
      handle.dispose();
      throw blobUnknown(digest);
    }
    return handle.open(range);
  }

  private dropCorrupt(digest: string): void {
    this.options.observer?.corruptBlobDropped?.();
    this.options.log.error({ digest }, 'cached blob failed its digest check; dropped, the next request fetches it again');
    void this.options.storage.deleteBlob(digest).catch(() => undefined);
  }

  /** The cached blob if present and usable: fresh, re-validated, or stale during an upstream outage. */
  private async cached(repo: ResolvedRepository, digest: string): Promise<CachedEntry | undefined> {
    const { storage, log, observer } = this.options;
    let stat: BlobStat | undefined;
    try {
      stat = await storage.statBlob(digest);
    } catch (e) {
      observer?.storageError?.('stat_blob');
      log.warn({ digest, err: errMessage(e) }, 'storage stat failed; treating as a miss');
      return undefined;
    }
    if (!stat) return undefined;
    const upstream = repo.upstream;
    if (this.options.offline || this.now() - stat.modified.getTime() <= upstream.blobInvalidationMs) return { stat, outcome: 'hit', warning: undefined };
    try {
      const found = await this.options.upstreams.client(upstream).headBlob(repo.repository, digest);
      if (!found) {
        // Upstream no longer has it: drop our copy and let the miss path report BLOB_UNKNOWN.
        await storage.deleteBlob(digest).catch(() => undefined);
        return undefined;
      }
      await storage.touchBlob(digest).catch(() => observer?.storageError?.('touch_blob'));
      return { stat, outcome: 'revalidated', warning: undefined };
    } catch (e) {
      if (isOciError(e) && e.isUpstreamOutage && upstream.serveStale) {
        log.warn({ digest, namespace: repo.namespace, err: e.message }, 'upstream unavailable; serving expired blob');
        return { stat, outcome: 'stale', warning: STALE_WARNING };
      }
      throw e;
    }
  }
}

function blobUnknown(digest: string): OciError {
  return new OciError('BLOB_UNKNOWN', 'blob unknown to registry', { detail: { digest } });
}

/** One uncached upstream stream for one client; the digest is still verified before the last byte. */
function directHandle(digest: string, source: FillSource): BlobHandle {
  let used = false;
  return {
    size: source.size,
    outcome: 'bypass',
    warning: undefined,
    rangeable: false,
    redirect: undefined,
    open: async () => {
      used = true;
      // pipeline, not pipe: an upstream error must reach the client's stream and cut its connection.
      return pipeline(source.body, verifyingStream(digest), () => undefined);
    },
    dispose: () => {
      if (!used) source.body.destroy();
    },
  };
}

function fillHandle(fill: BlobFill, outcome: CacheOutcome): BlobHandle {
  // Hold the spool open until the handle is opened or disposed.
  fill.retain();
  let released = false;
  const release = () => {
    if (!released) {
      released = true;
      fill.releaseRef();
    }
  };
  return {
    size: fill.size,
    outcome,
    warning: undefined,
    rangeable: fill.size !== undefined,
    redirect: undefined,
    open: async (range?: ByteRange): Promise<Readable> => {
      const reader = fill.reader(range?.start ?? 0, range ? range.end + 1 : undefined);
      release();
      return reader;
    },
    dispose: release,
  };
}
