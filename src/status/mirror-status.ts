import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { MirrorConfig, UpstreamConfig } from '../config/types.js';
import { resolveCacheSize, type CacheSizeLimit } from '../lifecycle/collector/cache-size.js';
import { DEFAULT_LOW_WATER_PERCENT } from '../lifecycle/collector/collector.js';
import { collect } from '../lifecycle/collector/expiry.js';
import {
  inventoryTag,
  manifestReader,
  repositoryKey,
  scanCache,
  scanTotals,
  type CacheScan,
  type ManifestReader,
} from '../lifecycle/collector/inventory.js';
import { METRIC_PREFIX } from '../metrics/registry.js';
import type { Resolver } from '../resolve/resolver.js';
import type { RepositoryRef, Storage } from '../storage/storage.js';
import { VERSION } from '../version.js';
import { DownloadWatcher, type DownloadRegistry } from './downloads.js';
import type { UpstreamHealth } from './upstream-health.js';
import type {
  CacheStatus,
  RepositoryPage,
  StatusQuery,
  StatusSnapshot,
  StatusSource,
  TagRow,
  TrafficStatus,
  UpstreamEvent,
  UpstreamStatus,
} from './types.js';
import { errorText } from '../error-text.js';

/** A listing of the whole cache is reused this long (the page refreshes itself every few seconds). */
const SCAN_MAX_AGE_MS = 30_000;
/** A page waits this long for a first listing of a large cache, then shows what it has without it. */
const SCAN_WAIT_MS = 5_000;
/** Outcomes whose bytes came out of the cache (as the metrics count them). */
const FROM_CACHE = new Set(['hit', 'stale', 'revalidated']);

export interface MirrorStatusOptions {
  config: MirrorConfig;
  resolver: Resolver;
  storage: Storage;
  downloads: DownloadRegistry;
  health: UpstreamHealth;
  /** The Prometheus registry of MirrorMetrics: hit ratio and bytes served are read from its counters. */
  metrics: Registry;
  log: Logger;
  offline?: boolean | undefined;
  maxCacheSize?: CacheSizeLimit | undefined;
  lowWaterPercent?: number | undefined;
  /** This process's own access times, not yet flushed to the storage the listing reads (AccessTracker). */
  recentAccess?: ((digest: string) => number | undefined) | undefined;
  /** The cache root, for a size limit in percent of its filesystem. */
  filesystemRoot?: string | undefined;
  scanMaxAgeMs?: number | undefined;
  scanWaitMs?: number | undefined;
  now?: (() => number) | undefined;
}

/**
 * The status page's data, gathered read-only: metrics counters, the upstream health observer, the running
 * downloads, and the cache listing of `ls` (src/lifecycle/collector/inventory.ts), paged. A page costs one listing
 * of repository names plus, per tag row shown, one tag record and its manifests; the listing of every
 * blob (cache size, tag sizes) is shared by all pages for SCAN_MAX_AGE_MS.
 */
export class MirrorStatus implements StatusSource {
  readonly protectedOnly: boolean;
  private readonly startedAt: number;
  private readonly now: () => number;
  private readonly watcher: DownloadWatcher;
  private scan: { value: CacheScan; at: number } | undefined;
  private scanning: Promise<void> | undefined;

  constructor(private readonly options: MirrorStatusOptions) {
    this.now = options.now ?? Date.now;
    this.startedAt = this.now();
    this.watcher = new DownloadWatcher(options.downloads);
    this.protectedOnly = everyNamespaceProtected(options.config);
  }

  async snapshot(query: StatusQuery): Promise<StatusSnapshot> {
    const scan = await this.currentScan();
    const [cache, traffic, downloads, upstreams, repositories] = await Promise.all([
      this.cacheStatus(scan),
      this.traffic(),
      this.watcher.read(query.visible),
      this.upstreams(query.visible),
      this.repositoryPage(query, scan?.value),
    ]);
    return {
      generatedAt: new Date(this.now()).toISOString(),
      startedAt: new Date(this.startedAt).toISOString(),
      version: VERSION,
      cache,
      traffic,
      downloads,
      upstreams,
      repositories,
    };
  }

  /** The latest listing of the cache; starts a new one when it is old, waiting only when there is none yet. */
  private async currentScan(): Promise<{ value: CacheScan; at: number } | undefined> {
    const maxAge = this.options.scanMaxAgeMs ?? SCAN_MAX_AGE_MS;
    if (!this.scanning && (!this.scan || this.now() - this.scan.at >= maxAge)) {
      const started = this.now();
      this.scanning = scanCache(this.options.storage)
        .then((value) => {
          this.scan = { value, at: started };
        })
        .catch((e: unknown) => this.options.log.warn({ err: errorText(e) }, 'status page: could not list the cache'))
        .finally(() => {
          this.scanning = undefined;
        });
    }
    if (this.scan || !this.scanning) return this.scan;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.scanning, new Promise((r) => (timer = setTimeout(r, this.options.scanWaitMs ?? SCAN_WAIT_MS)))]);
    clearTimeout(timer);
    return this.scan;
  }

  private async cacheStatus(scan: { value: CacheScan; at: number } | undefined): Promise<CacheStatus> {
    const totals = scan ? scanTotals(scan.value) : undefined;
    let limitBytes: number | null = null;
    if (this.options.maxCacheSize) {
      limitBytes = await resolveCacheSize(this.options.maxCacheSize, this.options.filesystemRoot).catch(() => null);
    }
    return {
      storage: this.options.storage.kind,
      offline: this.options.offline === true,
      blobBytes: totals?.blobBytes ?? null,
      blobs: totals?.blobs ?? null,
      manifests: totals?.manifests ?? null,
      manifestBytes: totals?.manifestBytes ?? null,
      measuredAt: scan ? new Date(scan.at).toISOString() : null,
      limitBytes,
      lowWaterBytes:
        limitBytes === null ? null : Math.floor((limitBytes * (this.options.lowWaterPercent ?? DEFAULT_LOW_WATER_PERCENT)) / 100),
    };
  }

  private async traffic(): Promise<TrafficStatus> {
    const lookups: Record<string, number> = {};
    for (const v of await this.counter('cache_requests_total')) {
      const outcome = String(v.labels['outcome'] ?? 'other');
      lookups[outcome] = (lookups[outcome] ?? 0) + v.value;
    }
    let all = 0;
    let fromCache = 0;
    for (const [outcome, n] of Object.entries(lookups)) {
      all += n;
      if (FROM_CACHE.has(outcome)) fromCache += n;
    }
    let bytesFromCache = 0;
    let bytesFromUpstream = 0;
    for (const v of await this.counter('bytes_served_total')) {
      if (v.labels['source'] === 'cache') bytesFromCache += v.value;
      else bytesFromUpstream += v.value;
    }
    return { lookups, hitRatio: all === 0 ? null : fromCache / all, bytesFromCache, bytesFromUpstream };
  }

  private async counter(name: string): Promise<Array<{ labels: Record<string, string | number | undefined>; value: number }>> {
    const metric = this.options.metrics.getSingleMetric(`${METRIC_PREFIX}${name}`);
    if (!metric) return [];
    return (await metric.get()).values;
  }

  /** The config's upstreams, the default namespace, and every other namespace an upstream exchange was seen for. */
  private async upstreams(visible: StatusQuery['visible']): Promise<UpstreamStatus[]> {
    const { config, resolver, health } = this.options;
    const names = new Set([...config.upstreams.keys(), config.defaultNamespace, ...health.namespaces()]);
    const out: UpstreamStatus[] = [];
    for (const namespace of [...names].sort()) {
      let upstream: UpstreamConfig;
      try {
        upstream = resolver.upstreamFor(namespace);
      } catch {
        continue; // not mirrored (any more): a config without the default namespace, a refused address
      }
      if (!(await visible(namespace))) continue;
      const seen = health.get(namespace);
      out.push({
        namespace,
        host: upstream.host,
        tls: upstream.tls,
        configured: upstream.explicit,
        clientAuth: upstream.clientAuthFile !== undefined,
        lastSuccess: event(seen?.lastSuccess),
        lastError: event(seen?.lastError),
      });
    }
    return out;
  }

  /**
   * Tag rows in `ls` order (repository `namespace/repository`, then tag), from `after` on, at most `limit`.
   * Repositories the viewer may not see are skipped before any of their tags is read.
   */
  private async repositoryPage(query: StatusQuery, scan: CacheScan | undefined): Promise<RepositoryPage> {
    const { limit } = query;
    if (limit <= 0) return { rows: [], next: null, limit };
    const { storage } = this.options;
    const cursor = parseCursor(query.after);
    const repos = (await collect(storage.listRepositories()))
      .map((repo) => ({ repo, key: repositoryKey(repo) }))
      .filter(({ key }) => !cursor || key >= cursor.key)
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    const cached = manifestReader(storage);
    // A manifest that cannot be read (a damaged record naming no digest) counts as not cached.
    const readManifest: ManifestReader = (digest) => cached(digest).catch(() => undefined);
    const rows: TagRow[] = [];
    const listing = scan ? this.withRecentAccess(scan) : undefined;
    for (const { repo, key } of repos) {
      if (!(await query.visible(repo.namespace))) continue;
      for (const tag of await storage.listTags(repo)) {
        if (cursor && key === cursor.key && tag <= cursor.tag) continue;
        if (rows.length === limit) {
          const last = rows[rows.length - 1] as TagRow;
          return { rows, next: `${repositoryKey(last)}:${last.tag}`, limit };
        }
        const row = await this.tagRow(repo, tag, listing, readManifest);
        if (row) rows.push(row);
      }
    }
    return { rows, next: null, limit };
  }

  /** The listing's access times (flushed by every replica) and this process's newer ones. */
  private withRecentAccess(scan: CacheScan): CacheScan {
    const recent = this.options.recentAccess;
    if (!recent) return scan;
    return {
      ...scan,
      access: {
        get: (digest) => {
          const a = scan.access.get(digest);
          const b = recent(digest);
          return a === undefined ? b : b === undefined ? a : Math.max(a, b);
        },
      },
    };
  }

  private async tagRow(
    repo: RepositoryRef,
    tag: string,
    scan: CacheScan | undefined,
    readManifest: ManifestReader,
  ): Promise<TagRow | undefined> {
    let entry;
    try {
      entry = await inventoryTag(this.options.storage, scan ?? EMPTY_SCAN, readManifest, repo, tag);
    } catch (e) {
      // A damaged tag record must not take the page down: it is left out (and logged at debug).
      this.options.log.debug(
        { namespace: repo.namespace, repository: repo.repository, tag, err: errorText(e) },
        'status page: unreadable tag record',
      );
      return undefined;
    }
    if (!entry) return undefined;
    return {
      namespace: repo.namespace,
      repository: repo.repository,
      tag: entry.tag,
      digest: entry.digest,
      mediaType: entry.mediaType,
      checkedAt: entry.checkedAt,
      // Without a listing of the cache, sizes and access times are unknown rather than zero.
      lastAccess: scan ? entry.lastAccess : null,
      size: scan ? entry.size : null,
      blobs: scan ? entry.blobs.length : null,
      missingBlobs: scan ? entry.missingBlobs : null,
    };
  }
}

const EMPTY_SCAN: CacheScan = { blobSizes: new Map(), manifests: [], access: new Map() };

/**
 * True when no request can pull without credentials: every configured namespace has client_auth and no
 * unlisted namespace is mirrored.
 */
export function everyNamespaceProtected(config: MirrorConfig): boolean {
  if (config.allowUnlisted || config.upstreams.size === 0) return false;
  return [...config.upstreams.values()].every((u) => u.clientAuthFile !== undefined);
}

/** `namespace/repository:tag` -> its parts. A tag has no `:` or `/`; a namespace may have a port. */
function parseCursor(after: string | undefined): { key: string; tag: string } | undefined {
  if (after === undefined || after === '') return undefined;
  const colon = after.lastIndexOf(':');
  if (colon > after.lastIndexOf('/')) return { key: after.slice(0, colon), tag: after.slice(colon + 1) };
  return { key: after, tag: '' };
}

function event(e: { at: number; message: string } | undefined): UpstreamEvent | null {
  return e ? { at: new Date(e.at).toISOString(), message: e.message } : null;
}
