/**
 * What the status page (`GET /`, `GET /status.json`) shows, and the one read-only interface the HTTP
 * route asks for it: routes know nothing of storage, metrics or downloads. Every field is plain JSON.
 */
export interface StatusSource {
  /** True when every namespace requires client_auth: then the page requires credentials too. */
  readonly protectedOnly: boolean;
  snapshot(query: StatusQuery): Promise<StatusSnapshot>;
}

export interface StatusQuery {
  /** Whether the viewer may see a namespace (its client_auth, if any, accepts the request's credentials). */
  visible(namespace: string): Promise<boolean>;
  /** At most this many tag rows of the repository listing; 0 skips the listing (the page's live refresh). */
  limit: number;
  /** Start after this row, as the previous page's `next` named it: `namespace/repository:tag`. */
  after: string | undefined;
}

export interface StatusSnapshot {
  generatedAt: string;
  startedAt: string;
  version: string;
  cache: CacheStatus;
  traffic: TrafficStatus;
  downloads: DownloadsStatus;
  upstreams: UpstreamStatus[];
  repositories: RepositoryPage;
}

export interface CacheStatus {
  /** `filesystem` or `s3`. */
  storage: string;
  offline: boolean;
  /** From a listing of the cache at most a short while old; null until the first one finished. */
  blobBytes: number | null;
  blobs: number | null;
  manifests: number | null;
  manifestBytes: number | null;
  measuredAt: string | null;
  /** `--max-cache-size` in bytes now, and the low-water mark eviction stops at; null when unbounded. */
  limitBytes: number | null;
  lowWaterBytes: number | null;
}

export interface TrafficStatus {
  /** Cache lookups since start by outcome: hit, miss, stale, coalesced, revalidated, bypass. */
  lookups: Record<string, number>;
  /** Share of lookups answered from the cache (hit, stale, revalidated); null before the first lookup. */
  hitRatio: number | null;
  bytesFromCache: number;
  bytesFromUpstream: number;
}

export interface DownloadStatus {
  namespace: string;
  digest: string;
  receivedBytes: number;
  /** Null when upstream sent no Content-Length. */
  sizeBytes: number | null;
  /** Clients reading this download now. */
  clients: number;
  /** `storing`: every byte arrived and matched the digest; the commit to storage runs. */
  state: 'downloading' | 'storing' | 'failed';
}

export interface DownloadsStatus {
  running: DownloadStatus[];
  /** Downloads still waiting for the upstream's answer (no size or namespace known yet to show). */
  waiting: number;
}

export interface UpstreamEvent {
  at: string;
  /** What happened: `manifest GET: HTTP 200`, `blob: upstream unreachable (ECONNREFUSED)`. Never credentials. */
  message: string;
}

export interface UpstreamStatus {
  namespace: string;
  host: string;
  tls: boolean;
  /** Named in the config file (others are mirrored because unlisted namespaces are allowed). */
  configured: boolean;
  /** Clients must authenticate to pull this namespace. */
  clientAuth: boolean;
  lastSuccess: UpstreamEvent | null;
  lastError: UpstreamEvent | null;
}

export interface RepositoryPage {
  rows: TagRow[];
  /** The `after` of the next page; null on the last one. */
  next: string | null;
  limit: number;
}

/** One cached tag, as `ls` computes it (src/lifecycle/collector/inventory.ts). Sizes are null until the cache was measured. */
export interface TagRow {
  namespace: string;
  repository: string;
  tag: string;
  digest: string;
  mediaType: string;
  checkedAt: string;
  lastAccess: string | null;
  size: number | null;
  blobs: number | null;
  missingBlobs: number | null;
}
