import type { Logger } from 'pino';
import type { Storage } from '../storage/storage.js';
import type { UpstreamPool } from '../upstream/upstream-pool.js';
import { BlobService } from './blob-service.js';
import { CatalogService } from './catalog-service.js';
import type { DownloadLimits } from './download-limits.js';
import type { AccessRecorder, ProxyObserver } from './events.js';
import { RepositoryLinks } from './links.js';
import { ManifestService } from './manifest-service.js';
import type { PeerRouting } from './peer-routing.js';
import { ReferrersService } from './referrers-service.js';
import { TagService } from './tag-service.js';

export interface MirrorOptions {
  storage: Storage;
  upstreams: UpstreamPool;
  log: Logger;
  spoolDir: string;
  observer?: ProxyObserver | undefined;
  checkCacheDigest?: boolean;
  redirectSeconds?: number | undefined;
  /** Never contact upstreams: manifests, tags and blobs only from the cache, unknown otherwise. */
  offline?: boolean | undefined;
  /** Told of every blob and manifest served (the cache lifecycle's access tracker). */
  access?: AccessRecorder | undefined;
  /** --max-blob-size and --max-spool-size (defaults when absent). */
  downloads?: Partial<DownloadLimits> | undefined;
  /** With --peers: cold requests go to the replica that owns the digest or tag. */
  peers?: PeerRouting | undefined;
  now?: () => number;
}

/** The cache policy as one object the HTTP layer talks to. */
export class Mirror {
  readonly manifests: ManifestService;
  readonly blobs: BlobService;
  readonly tags: TagService;
  readonly referrers: ReferrersService;
  readonly catalog: CatalogService;
  /** Which repository may serve which digest, for manifests and blobs alike. */
  readonly links: RepositoryLinks;

  constructor(readonly options: MirrorOptions) {
    const { storage, upstreams, log, observer, now, offline, access } = options;
    this.links = new RepositoryLinks({ storage, log, observer, now: now ?? Date.now });
    const links = this.links;
    const peers = options.peers;
    this.manifests = new ManifestService({ storage, upstreams, log, observer, offline, access, links, peers, ...(now ? { now } : {}) });
    this.blobs = new BlobService({
      storage,
      upstreams,
      log,
      observer,
      spoolDir: options.spoolDir,
      checkCacheDigest: options.checkCacheDigest ?? false,
      redirectSeconds: options.redirectSeconds,
      offline,
      access,
      limits: options.downloads,
      links,
      peers,
      ...(now ? { now } : {}),
    });
    const tagsWritten = () => this.manifests.drain();
    this.tags = new TagService(storage, upstreams, log, offline ?? false, tagsWritten);
    this.referrers = new ReferrersService({ upstreams, manifests: this.manifests, log, offline, ...(now ? { now } : {}) });
    this.catalog = new CatalogService(storage, tagsWritten);
  }

  /** Waits for running downloads and the storage writes behind responses (graceful shutdown, tests). */
  async drain(): Promise<void> {
    await Promise.all([this.blobs.drain(), this.manifests.drain()]);
    // Last: the requests above record links until they end.
    await this.links.drain();
  }

  /** Whether a blob is being downloaded or read from the cache now: the collector must not delete it. */
  inUse(digest: string): boolean {
    return this.blobs.inUse(digest);
  }
}
