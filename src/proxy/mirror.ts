import type { Logger } from 'pino';
import type { Storage } from '../storage/storage.js';
import type { UpstreamPool } from '../upstream/upstream-pool.js';
import { BlobService } from './blob-service.js';
import type { ProxyObserver } from './events.js';
import { ManifestService } from './manifest-service.js';
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
  now?: () => number;
}

/** The cache policy as one object the HTTP layer talks to. */
export class Mirror {
  readonly manifests: ManifestService;
  readonly blobs: BlobService;
  readonly tags: TagService;
  readonly referrers: ReferrersService;

  constructor(readonly options: MirrorOptions) {
    const { storage, upstreams, log, observer, now } = options;
    this.manifests = new ManifestService({ storage, upstreams, log, observer, ...(now ? { now } : {}) });
    this.blobs = new BlobService({
      storage,
      upstreams,
      log,
      observer,
      spoolDir: options.spoolDir,
      checkCacheDigest: options.checkCacheDigest ?? false,
      redirectSeconds: options.redirectSeconds,
      ...(now ? { now } : {}),
    });
    this.tags = new TagService(storage, upstreams, log);
    this.referrers = new ReferrersService(upstreams);
  }
}
