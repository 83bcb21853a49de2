import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { EntryKind, ProxyObserver } from '../proxy/events.js';
import type { UpstreamObserver } from '../upstream/upstream-client.js';
import { ClusterMetrics } from './cluster-metrics.js';
import { CounterTally } from './counter-tally.js';
import { createMetricsRegistry, METRIC_PREFIX } from './registry.js';

/**
 * One finished HTTP request, as the HTTP layer reports it (AppOptions.onRequestDone). Declared here, not
 * imported from http/: metrics depends on no layer it observes; create-server.ts wires the two, and the
 * compiler checks there that the shapes agree.
 */
export interface RequestDoneInfo {
  /** The route name (`manifests`, `blobs`, `tags`, `referrers`, ...). */
  route: string;
  method: string;
  status: number;
  namespace: string | undefined;
  /** The cache outcome (`hit`, `miss`, `stale`, ...), when the route has one. */
  outcome: string | undefined;
  bytes: number | undefined;
  seconds: number;
  /** The request came from a peer replica (the hop header). */
  hop?: boolean;
}

/** Route names of the /v2 handlers (src/http/routes/v2.ts) -> the cache entry kind they look up. */
const ROUTE_KIND: Record<string, EntryKind> = { manifests: 'manifest', blobs: 'blob', tags: 'tags', referrers: 'referrers' };
/** Outcomes whose bytes came out of the cache (the others streamed from upstream). */
const FROM_CACHE = new Set(['hit', 'stale', 'revalidated']);
/**
 * Beyond this many distinct namespaces, further ones are counted as "other": with unlisted namespaces
 * allowed, clients choose the namespace, and must not be able to grow the series without bound.
 */
export const MAX_NAMESPACE_LABELS = 100;

const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

/**
 * The mirror's Prometheus metrics. It observes the cache policy (ProxyObserver), every upstream exchange
 * (UpstreamObserver) and every finished HTTP request (requestDone, for AppOptions.onRequestDone).
 *
 * Cache outcomes and served bytes are counted once per request, from requestDone: the request context
 * carries the outcome and the bytes, so the proxy does not report them separately.
 */
export class MirrorMetrics implements ProxyObserver, UpstreamObserver {
  readonly registry: Registry;
  /** The cluster's metrics (peers, forwarding); their membership gauge has no sample without --peers. */
  readonly cluster: ClusterMetrics;
  private readonly namespaces = new Set<string>();

  private readonly requests: Counter<'route' | 'method' | 'status'>;
  private readonly requestDuration: Histogram<'route'>;
  private readonly cacheRequests: Counter<'namespace' | 'kind' | 'outcome'>;
  private readonly servedBytes: Counter<'namespace' | 'source'>;
  private readonly upstreamRequests: Counter<'namespace' | 'host' | 'kind' | 'status'>;
  private readonly upstreamDuration: Histogram<'namespace' | 'host' | 'kind'>;
  private readonly upstreamErrors: Counter<'namespace' | 'host' | 'kind' | 'code'>;
  private readonly upstreamFailovers: Counter<'namespace' | 'from' | 'to'>;
  private readonly downloadsInFlight: Gauge;
  private readonly downloads: Counter<'namespace' | 'result'>;
  private readonly coalesced: Counter<'namespace'>;
  private readonly storageErrors: Counter<'operation'>;
  private readonly corruptDropped: Counter;
  private readonly sendTimeouts: Counter;
  private readonly clientLimited: Counter;
  private readonly cacheSize: Gauge;
  private readonly cacheSizeLimit: Gauge;
  /** What requestDone counts, per request: tallied, handed to the counters when they are read. */
  private readonly requestTally = new CounterTally(['route', 'method', 'status'] as const);
  private readonly cacheTally = new CounterTally(['namespace', 'kind', 'outcome'] as const);
  private readonly bytesTally = new CounterTally(['namespace', 'source'] as const);
  private readonly coalescedTally = new CounterTally(['namespace'] as const);

  constructor(registry: Registry = createMetricsRegistry()) {
    this.registry = registry;
    const registers = [registry];
    const p = METRIC_PREFIX;
    this.requests = new Counter({
      name: `${p}requests_total`,
      help: 'HTTP requests answered, by route, method and status',
      labelNames: ['route', 'method', 'status'],
      registers,
      collect: () => this.requestTally.flush(this.requests),
    });
    this.requestDuration = new Histogram({
      name: `${p}request_duration_seconds`,
      help: 'Time from request to the end of the response, by route',
      labelNames: ['route'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.cacheRequests = new Counter({
      name: `${p}cache_requests_total`,
      help: 'Cache lookups by namespace, entry kind and outcome (hit, miss, stale, coalesced, revalidated, bypass, peer)',
      labelNames: ['namespace', 'kind', 'outcome'],
      registers,
      collect: () => this.cacheTally.flush(this.cacheRequests),
    });
    this.servedBytes = new Counter({
      name: `${p}bytes_served_total`,
      help: 'Response body bytes of manifests and blobs, by namespace and whether they came from the cache, upstream or the owner replica (peer)',
      labelNames: ['namespace', 'source'],
      registers,
      collect: () => this.bytesTally.flush(this.servedBytes),
    });
    this.upstreamRequests = new Counter({
      name: `${p}upstream_requests_total`,
      help: 'Upstream responses by namespace, host (primary or fallback), request kind and HTTP status',
      labelNames: ['namespace', 'host', 'kind', 'status'],
      registers,
    });
    this.upstreamDuration = new Histogram({
      name: `${p}upstream_request_duration_seconds`,
      help: 'Time until the upstream response headers (auth round trips included), by namespace and host',
      labelNames: ['namespace', 'host', 'kind'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.upstreamErrors = new Counter({
      name: `${p}upstream_errors_total`,
      help: 'Upstream exchanges that failed without a response, by host and error code',
      labelNames: ['namespace', 'host', 'kind', 'code'],
      registers,
    });
    this.upstreamFailovers = new Counter({
      name: `${p}upstream_failovers_total`,
      help: 'Requests moved from a failing upstream host to the next configured one',
      labelNames: ['namespace', 'from', 'to'],
      registers,
    });
    this.downloadsInFlight = new Gauge({
      name: `${p}blob_downloads_in_flight`,
      help: 'Blob downloads from upstream running now',
      registers,
    });
    this.downloads = new Counter({
      name: `${p}blob_downloads_total`,
      help: 'Finished blob downloads from upstream, by result (stored, uncached, failed, digest_mismatch)',
      labelNames: ['namespace', 'result'],
      registers,
    });
    this.coalesced = new Counter({
      name: `${p}coalesced_requests_total`,
      help: 'Requests that joined a download already running instead of starting one',
      labelNames: ['namespace'],
      registers,
      collect: () => this.coalescedTally.flush(this.coalesced),
    });
    this.storageErrors = new Counter({
      name: `${p}storage_errors_total`,
      help: 'Storage operations that failed, by operation',
      labelNames: ['operation'],
      registers,
    });
    this.corruptDropped = new Counter({
      name: `${p}corrupt_blobs_dropped_total`,
      help: 'Cached blobs found corrupt while served (--check-cache-digest) and deleted',
      registers,
    });
    this.sendTimeouts = new Counter({
      name: `${p}send_timeouts_total`,
      help: 'Responses closed because the client took no bytes for --send-timeout',
      registers,
    });
    this.clientLimited = new Counter({
      name: `${p}client_limit_rejections_total`,
      help: 'Requests refused with 429 because their client address had --max-connections-per-client responses running',
      registers,
    });
    this.cacheSize = new Gauge({
      name: `${p}cache_size_bytes`,
      help: 'Bytes of cached blobs after the last cache collection run (every --gc-interval, with --max-cache-size or --cache-expiry)',
      registers,
    });
    this.cacheSizeLimit = new Gauge({
      name: `${p}cache_size_limit_bytes`,
      help: '--max-cache-size in bytes, as resolved by the last cache collection run',
      registers,
    });
    // No sample until a collection run has measured them: a 0 would read as an empty cache, or no room at all.
    this.cacheSize.remove();
    this.cacheSizeLimit.remove();
    this.cluster = new ClusterMetrics(registry);
  }

  /** For AppOptions.limits. */
  readonly sendTimedOut = (): void => this.sendTimeouts.inc();
  readonly clientLimitHit = (): void => this.clientLimited.inc();

  /** For AppOptions.onRequestDone. */
  readonly requestDone = (info: RequestDoneInfo): void => {
    this.requestTally.inc(1, info.route, info.method, String(info.status));
    this.requestDuration.observe(this.routeLabels(info.route), info.seconds);
    if (info.hop === true) this.cluster.answered(info.route, info.status);
    if (info.namespace === undefined) return;
    const namespace = this.ns(info.namespace);
    const kind = ROUTE_KIND[info.route];
    if (kind !== undefined && info.outcome !== undefined) {
      this.cacheTally.inc(1, namespace, kind, info.outcome);
      if (info.outcome === 'coalesced') this.coalescedTally.inc(1, namespace);
    }
    if (info.bytes !== undefined && info.bytes > 0) {
      const source = info.outcome === 'peer' ? 'peer' : info.outcome !== undefined && FROM_CACHE.has(info.outcome) ? 'cache' : 'upstream';
      this.bytesTally.inc(info.bytes, namespace, source);
    }
  };

  onResponse(namespace: string, kind: string, status: number, seconds: number, host: string): void {
    const ns = this.ns(namespace);
    const h = hostLabel(ns, host);
    this.upstreamRequests.inc({ namespace: ns, host: h, kind, status: String(status) });
    this.upstreamDuration.observe({ namespace: ns, host: h, kind }, seconds);
  }

  onError(namespace: string, kind: string, code: string, host: string): void {
    const ns = this.ns(namespace);
    this.upstreamErrors.inc({ namespace: ns, host: hostLabel(ns, host), kind, code });
  }

  onFailover(namespace: string, from: string, to: string): void {
    // Only configured entries have fallbacks: from and to come from the config file.
    this.upstreamFailovers.inc({ namespace: this.ns(namespace), from, to });
  }

  downloadStarted(): void {
    this.downloadsInFlight.inc();
  }

  downloadFinished(namespace: string, result: 'stored' | 'uncached' | 'failed' | 'digest_mismatch'): void {
    this.downloadsInFlight.dec();
    this.downloads.inc({ namespace: this.ns(namespace), result });
  }

  storageError(operation: string): void {
    this.storageErrors.inc({ operation });
  }

  corruptBlobDropped(): void {
    this.corruptDropped.inc();
  }

  /** For CollectorOptions.onCollected: the cache size (and limit) a collection run measured. */
  readonly cacheCollected = (report: { finalBytes: number; limitBytes: number | undefined }): void => {
    this.cacheSize.set(report.finalBytes);
    if (report.limitBytes === undefined) this.cacheSizeLimit.remove();
    else this.cacheSizeLimit.set(report.limitBytes);
  };

  /** One label object per route (routes are the app's own names), not one per request. */
  private readonly routeLabelCache = new Map<string, { route: string }>();
  private routeLabels(route: string): { route: string } {
    let labels = this.routeLabelCache.get(route);
    if (labels === undefined) this.routeLabelCache.set(route, (labels = { route }));
    return labels;
  }

  private ns(namespace: string): string {
    if (this.namespaces.has(namespace)) return namespace;
    if (this.namespaces.size >= MAX_NAMESPACE_LABELS) return 'other';
    this.namespaces.add(namespace);
    return namespace;
  }
}

/**
 * Hosts are the namespace's configured primary and fallbacks (or, unlisted, the one host derived from the
 * namespace), so they are as bounded as the namespaces; a namespace counted as "other" hides its host too.
 */
function hostLabel(namespaceLabel: string, host: string): string {
  return namespaceLabel === 'other' ? 'other' : host;
}
