import { errorText } from '../error-text.js';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { OciError, isOciError } from '../oci/errors.js';
import type { ResolvedRepository } from '../resolve/resolver.js';
import type { BlobStat, ByteRange, Storage } from '../storage/storage.js';
import { statusError } from '../upstream/errors.js';
import type { UpstreamPool } from '../upstream/upstream-pool.js';
import { pipeline } from 'node:stream';
import { BlobDownload } from './download/blob-download.js';
import type { SourceBody } from './download/download-source.js';
import { InflightDownloads } from './download/inflight-downloads.js';
import { readDownload } from './download/spool-reader.js';
import { SpoolFullError, SpoolUnavailableError } from './download/spool-unavailable.js';
import { STALE_WARNING, type BlobHandle } from './blob-handle.js';
import { DEFAULT_MAX_BLOB_SIZE, DEFAULT_MAX_SPOOL_SIZE, SpoolBudget, type DownloadLimits } from './download-limits.js';
import type { AccessRecorder, CacheOutcome, ProxyObserver } from './events.js';
import type { RepositoryLinks } from './links.js';
import { repoRef } from './manifest-service.js';
import { verifyingStream } from './verify-stream.js';
import { clusterKeys } from '../cluster/rendezvous.js';
import { askOwnerForBlob } from './peer-blob.js';
import { keepsPeerCopies, ownerToAsk, type PeerRouting, type RequestOrigin } from './peer-routing.js';

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
  /** --max-blob-size and --max-spool-size; the defaults when absent. */
  limits?: Partial<DownloadLimits> | undefined;
  /** Which repository may serve which digest (shared with the manifest service). */
  links: RepositoryLinks;
  /** With --peers: a cold blob is streamed from the replica that owns its digest. */
  peers?: PeerRouting | undefined;
  now?: () => number;
}

interface CachedEntry {
  stat: BlobStat;
  outcome: CacheOutcome;
  warning: string | undefined;
  /** Linked by this request: the upstream confirmed the digest for this repository just now. */
  linked?: boolean;
}

/** The blob's size for a HEAD answer. */
export interface BlobHead {
  size: number | undefined;
  outcome: CacheOutcome;
  warning: string | undefined;
  linked?: boolean;
}

/**
 * Blob cache policy: serve from storage when present (re-checking upstream after blob_invalidation_time),
 * otherwise join or start the single download of that digest from this request's upstream.
 *
 * Access is per repository: a digest is served through `namespace/repository` only when linked to it
 * (RepositoryLinks). Without a link, this repository's upstream is asked first (a HEAD, or the download
 * itself), and its 404 is answered exactly as for a digest this cache never saw: the client learns
 * nothing about what other repositories pulled. An upstream's 404 on re-validation drops only this
 * repository's link; the bytes are the collector's to delete.
 */
export class BlobService {
  private readonly inflight = new InflightDownloads();
  private readonly maxBlobSize: number;
  /** Past it, new uncached pulls stream to their client without spooling (and are not cached). */
  private readonly spool: SpoolBudget;
  /** Until then, uncached blobs bypass the local disk (it refused a write: full, read-only, failing). */
  private bypassUntil = 0;
  /** Cached blobs with an open handle or stream, by digest: the collector must not delete them. */
  private readonly readers = new Map<string, number>();
  private readonly now: () => number;
  /** Downloads whose source is the owner replica (their first request is a `peer` outcome, not a `miss`). */
  private readonly ownerSourced = new WeakSet<BlobDownload>();

  constructor(private readonly options: BlobServiceOptions) {
    this.now = options.now ?? Date.now;
    this.maxBlobSize = options.limits?.maxBlobSize ?? DEFAULT_MAX_BLOB_SIZE;
    this.spool = new SpoolBudget(options.limits?.maxSpoolSize ?? DEFAULT_MAX_SPOOL_SIZE);
  }

  /** Size of a blob for HEAD, without downloading it. */
  async head(repo: ResolvedRepository, digest: string): Promise<BlobHead> {
    const ref = repoRef(repo);
    const links = this.options.links;
    let linkedAt = links.peek(ref, 'blob', digest) ?? (await links.get(ref, 'blob', digest));
    let found: { size: number | undefined } | undefined;
    if (linkedAt === undefined) {
      // Unlinked: the HEAD upstream a miss makes anyway decides, whatever the cache holds.
      if (this.options.offline) throw blobUnknown(digest);
      found = await this.options.upstreams.client(repo.upstream).headBlob(repo.repository, digest);
      if (!found) throw blobUnknown(digest);
      links.record(ref, 'blob', digest);
      linkedAt = this.now();
    }
    const cached = await this.cached(repo, digest, linkedAt, 'HEAD');
    if (cached) {
      this.options.access?.record(digest);
      return { size: cached.stat.size, outcome: cached.outcome, warning: cached.warning, linked: found !== undefined };
    }
    const running = this.inflight.get(repo.upstream, digest);
    if (running) {
      const download = await running;
      return { size: download.size, outcome: 'coalesced', warning: undefined };
    }
    if (this.options.offline) throw blobUnknown(digest);
    if (found) return { size: found.size, outcome: 'miss', warning: undefined };
    const client = this.options.upstreams.client(repo.upstream);
    found = await client.headBlob(repo.repository, digest);
    if (!found) throw new OciError('BLOB_UNKNOWN', 'blob unknown to registry', { detail: { digest } });
    return { size: found.size, outcome: 'miss', warning: undefined };
  }

  /** `expectedSize`: the size a manifest's descriptor gives the blob, when the caller knows it; more is refused. */
  async open(repo: ResolvedRepository, digest: string, expectedSize?: number, origin?: RequestOrigin): Promise<BlobHandle> {
    const ref = repoRef(repo);
    const links = this.options.links;
    const linkedAt = links.peek(ref, 'blob', digest) ?? (await links.get(ref, 'blob', digest));
    if (linkedAt === undefined) {
      const led = await links.prove(ref, 'blob', digest, () => this.openUnlinked(repo, digest, expectedSize, origin));
      // Undefined: another request of this repository showed access meanwhile; it is linked now.
      return led ?? this.open(repo, digest, expectedSize, origin);
    }
    const cached = await this.cached(repo, digest, linkedAt, 'GET');
    if (cached) return this.cachedHandle(repo, digest, cached);
    return this.openUncached(repo, digest, expectedSize, origin);
  }

  /**
   * A digest not linked to this repository. Cached (through another repository): a HEAD upstream here
   * decides. Not cached: the download through this repository is the proof, and links it; joining a
   * download another repository started needs the HEAD too. A 404 is the very error a true miss gets.
   */
  private async openUnlinked(
    repo: ResolvedRepository,
    digest: string,
    expectedSize: number | undefined,
    origin: RequestOrigin | undefined,
  ): Promise<BlobHandle> {
    if (this.options.offline) throw blobUnknown(digest);
    const stat = await this.statOrMiss(digest);
    if (stat) {
      await this.confirmUpstream(repo, digest);
      return this.cachedHandle(repo, digest, { stat, outcome: 'hit', warning: undefined, linked: true });
    }
    const handle = await this.openUncached(repo, digest, expectedSize, origin);
    if (handle.outcome === 'coalesced') {
      try {
        await this.confirmUpstream(repo, digest);
      } catch (e) {
        handle.dispose();
        throw e;
      }
      return { ...handle, linked: true };
    }
    // This repository's upstream (or the owner replica, for this repository) answered the GET: linked.
    this.options.links.record(repoRef(repo), 'blob', digest);
    return handle;
  }

  /** HEAD upstream for this repository; links on success, else the error a GET would have got (404 as BLOB_UNKNOWN). */
  private async confirmUpstream(repo: ResolvedRepository, digest: string): Promise<void> {
    const found = await this.options.upstreams.client(repo.upstream).headBlob(repo.repository, digest);
    if (!found) throw statusError(repo.namespace, 404, 'BLOB_UNKNOWN');
    this.options.links.record(repoRef(repo), 'blob', digest);
  }

  /** Whether a blob is being downloaded (from any upstream) or served from the cache right now (the collector skips it). */
  inUse(digest: string): boolean {
    return this.inflight.has(digest) || this.readers.has(digest);
  }

  /** Waits for every running download (graceful shutdown). */
  async drain(): Promise<void> {
    await settleAll(this.inflight.all());
  }

  /** Resolves when the running downloads of the digest, from any upstream, have finished (stored it or failed). */
  async settled(digest: string): Promise<void> {
    await settleAll(this.inflight.of(digest));
  }

  get inflightCount(): number {
    return this.inflight.size;
  }

  /** The downloads running now, for the status page to read; a pending promise is still waiting for upstream's answer. */
  inflightDownloads(): Iterable<Promise<BlobDownload>> {
    return this.inflight.all();
  }

  /** Joins the running download of the digest from this request's upstream, or starts one. */
  private async openUncached(repo: ResolvedRepository, digest: string, expectedSize?: number, origin?: RequestOrigin): Promise<BlobHandle> {
    const running = this.inflight.get(repo.upstream, digest);
    if (running) return this.joinOrBypass(repo, digest, running, expectedSize, origin);
    if (this.options.offline) throw blobUnknown(digest);
    if (this.now() < this.bypassUntil || !this.spool.admits) return this.bypass(repo, digest, expectedSize);
    return this.startDownload(repo, digest, expectedSize, origin);
  }

  /** The most bytes a download may bring: --max-blob-size, or the descriptor's size when smaller. */
  private maxBytes(expectedSize: number | undefined): number {
    return expectedSize === undefined ? this.maxBlobSize : Math.min(expectedSize, this.maxBlobSize);
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

  private async startDownload(
    repo: ResolvedRepository,
    digest: string,
    expectedSize: number | undefined,
    origin: RequestOrigin | undefined,
  ): Promise<BlobHandle> {
    const { log, observer } = this.options;
    const maxBytes = this.maxBytes(expectedSize);
    const owner = ownerToAsk(this.options.peers, clusterKeys.digest(digest), origin);
    const starting =
      owner === undefined ? this.fromUpstream(repo, digest, maxBytes) : this.fromOwner(owner, repo, digest, maxBytes, origin);
    this.inflight.set(repo.upstream, digest, starting);
    let download: BlobDownload;
    try {
      download = await starting;
    } catch (e) {
      this.inflight.delete(repo.upstream, digest, starting);
      if (!(e instanceof SpoolUnavailableError)) throw e;
      if (e instanceof SpoolFullError) {
        log.info(
          { digest, namespace: repo.namespace, spoolBytes: this.spool.bytes },
          'spool at --max-spool-size; streaming the blob uncached',
        );
      } else {
        // Local disk trouble: this client streams the body it already has, uncached.
        observer?.storageError?.('spool');
        log.warn({ digest, err: e.message }, 'cannot spool blob; streaming it uncached');
      }
      return directHandle(digest, e.source, maxBytes);
    }
    void download.settled().then(() => {
      this.inflight.delete(repo.upstream, digest, starting);
      if (download.localWriteFailed) {
        // The disk is full or refuses writes: for a while, stream blobs straight from upstream.
        this.bypassUntil = this.now() + STORAGE_BYPASS_MS;
        log.warn({ digest, seconds: STORAGE_BYPASS_MS / 1000 }, 'local disk refused a write; serving blobs uncached for a while');
      }
      // Stored now: the blob's last use (to the millisecond; S3 LastModified has whole seconds).
      if (download.stored) this.options.access?.record(digest);
    });
    return downloadHandle(download, this.ownerSourced.has(download) ? 'peer' : 'miss');
  }

  private fromUpstream(repo: ResolvedRepository, digest: string, maxBytes: number): Promise<BlobDownload> {
    const { storage, spoolDir, log, observer } = this.options;
    const client = this.options.upstreams.client(repo.upstream);
    const source = () =>
      client.getBlob(repo.repository, digest, { maxBytes }).then((body) => {
        observer?.downloadStarted?.(repo.namespace);
        return body;
      });
    return BlobDownload.start({ digest, namespace: repo.namespace, storage, spoolDir, log, observer, maxBytes, spool: this.spool }, source);
  }

  /**
   * The blob streamed from the replica that owns it, verified here as any download. The owner stores it:
   * this replica keeps nothing (shared storage: the owner's upload is everyone's copy; own root: unless
   * --peer-cache-copies). An owner that cannot answer before its first byte leaves the download to its
   * runner-up (the owner is marked down by then), else to this replica's upstream.
   */
  private async fromOwner(
    owner: string,
    repo: ResolvedRepository,
    digest: string,
    maxBytes: number,
    origin: RequestOrigin | undefined,
  ): Promise<BlobDownload> {
    const peers = this.options.peers as PeerRouting;
    const { storage, spoolDir, log, observer } = this.options;
    let peer = owner;
    let body = await askOwnerForBlob(peers, peer, repo, digest, origin, log);
    if (!body) {
      const next = ownerToAsk(peers, clusterKeys.digest(digest), origin);
      if (next === undefined || next === peer) return this.fromUpstream(repo, digest, maxBytes);
      peer = next;
      body = await askOwnerForBlob(peers, peer, repo, digest, origin, log);
      if (!body) return this.fromUpstream(repo, digest, maxBytes);
    }
    const answer = body;
    // Not an upstream download for the metrics; a body that does not hash to its digest marks the owner down.
    const watch: ProxyObserver = {
      downloadFinished: (_namespace, result) => {
        if (result === 'digest_mismatch') peers.cluster.peerFailed(peer, 'blob', 'digest_mismatch');
      },
      storageError: (operation) => observer?.storageError?.(operation),
    };
    const options = {
      digest,
      namespace: repo.namespace,
      storage,
      spoolDir,
      log,
      observer: watch,
      maxBytes,
      spool: this.spool,
      store: keepsPeerCopies(peers),
    };
    const download = await BlobDownload.start(options, async () => answer);
    this.ownerSourced.add(download);
    return download;
  }

  /** A follower whose leader could not spool fetches its own uncached stream. */
  private async joinOrBypass(
    repo: ResolvedRepository,
    digest: string,
    running: Promise<BlobDownload>,
    expectedSize: number | undefined,
    origin: RequestOrigin | undefined,
  ): Promise<BlobHandle> {
    try {
      const download = await running;
      if (download.failure) {
        // Already failed, and only not yet cleaned up: this request starts afresh instead of sharing the failure.
        this.inflight.delete(repo.upstream, digest, running);
        return this.openUncached(repo, digest, expectedSize, origin);
      }
      return downloadHandle(download, 'coalesced');
    } catch (e) {
      if (!(e instanceof SpoolUnavailableError)) throw e;
      return this.bypass(repo, digest, expectedSize);
    }
  }

  /** An uncached stream of its own for this client, straight from upstream. */
  private async bypass(repo: ResolvedRepository, digest: string, expectedSize?: number): Promise<BlobHandle> {
    const maxBytes = this.maxBytes(expectedSize);
    const source = await this.options.upstreams.client(repo.upstream).getBlob(repo.repository, digest, { maxBytes });
    return directHandle(digest, source, maxBytes);
  }

  private async cachedHandle(repo: ResolvedRepository, digest: string, entry: CachedEntry): Promise<BlobHandle> {
    const { storage } = this.options;
    // Served from the cache: its last access (a download counts when it is stored, see startDownload).
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
      linked: entry.linked === true,
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

  private async statOrMiss(digest: string): Promise<BlobStat | undefined> {
    try {
      return await this.options.storage.statBlob(digest);
    } catch (e) {
      this.options.observer?.storageError?.('stat_blob');
      this.options.log.warn({ digest, err: errorText(e) }, 'storage stat failed; treating as a miss');
      return undefined;
    }
  }

  /**
   * The cached blob if present and usable through this linked repository: fresh (its link younger than
   * blob_invalidation_time), re-validated, or stale during an upstream outage.
   */
  private async cached(
    repo: ResolvedRepository,
    digest: string,
    linkedAt: number,
    method: 'GET' | 'HEAD',
  ): Promise<CachedEntry | undefined> {
    const { storage, log, observer } = this.options;
    const stat = await this.statOrMiss(digest);
    if (!stat) return undefined;
    const upstream = repo.upstream;
    if (this.options.offline || this.now() - linkedAt <= upstream.blobInvalidationMs) return { stat, outcome: 'hit', warning: undefined };
    try {
      const found = await this.options.upstreams.client(upstream).headBlob(repo.repository, digest);
      if (!found) {
        // This upstream no longer has it: this repository loses its link. The bytes stay for the
        // repositories whose upstreams still have them; deleting them is the collector's job.
        this.options.links.drop(repoRef(repo), 'blob', digest);
        throw method === 'HEAD' ? blobUnknown(digest) : statusError(repo.namespace, 404, 'BLOB_UNKNOWN');
      }
      this.options.links.record(repoRef(repo), 'blob', digest);
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

async function settleAll(running: Promise<BlobDownload>[]): Promise<void> {
  const downloads = await Promise.allSettled(running);
  await Promise.all(downloads.map((d) => (d.status === 'fulfilled' ? d.value.settled() : undefined)));
}

/**
 * One uncached upstream stream for one client; the digest is still verified before the last byte, and the
 * body is cut past `maxBytes` (or its Content-Length).
 */
function directHandle(digest: string, source: SourceBody, maxBytes: number): BlobHandle {
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
      return pipeline(
        source.body,
        verifyingStream(digest, undefined, Math.min(source.size ?? Number.POSITIVE_INFINITY, maxBytes)),
        () => undefined,
      );
    },
    dispose: () => {
      if (!used) source.body.destroy();
    },
  };
}

function downloadHandle(download: BlobDownload, outcome: CacheOutcome): BlobHandle {
  // Hold the spool open until the handle is opened or disposed.
  const release = download.hold();
  return {
    size: download.size,
    outcome,
    warning: undefined,
    rangeable: download.size !== undefined,
    redirect: undefined,
    open: async (range?: ByteRange): Promise<Readable> => {
      const reader = readDownload(download, range?.start ?? 0, range ? range.end + 1 : undefined);
      release();
      return reader;
    },
    dispose: release,
  };
}
