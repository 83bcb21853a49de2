import { rm } from 'node:fs/promises';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { MirrorConfig } from '../config/types.js';
import { HtpasswdVerifier } from '../auth/htpasswd.js';
import { Cluster, type ClusterSettings } from '../cluster/cluster.js';
import type { LookupAddresses } from '../cluster/dns-lookup.js';
import type { PeerRouting } from '../proxy/peer-routing.js';
import { buildApp } from '../http/app.js';
import { ClientAuth } from '../http/client-auth.js';
import { healthRoutes } from '../http/routes/health.js';
import { buildMetricsApp, metricsRoutes } from '../http/routes/metrics.js';
import { MirrorMetrics } from '../metrics/mirror-metrics.js';
import { combineObservers } from '../metrics/observers.js';
import type { DownloadLimits } from '../proxy/download-limits.js';
import type { ProxyObserver } from '../proxy/events.js';
import { Mirror } from '../proxy/mirror.js';
import { Resolver } from '../resolve/resolver.js';
import type { Storage } from '../storage/storage.js';
import { UpstreamPool } from '../upstream/upstream-pool.js';
import type { UpstreamObserver } from '../upstream/upstream-client.js';
import { createSpoolDir } from './spool-dir.js';
import { AccessTracker } from '../lifecycle/collector/access-tracker.js';
import { Collector } from '../lifecycle/collector/collector.js';
import type { CacheSizeLimit } from '../lifecycle/collector/cache-size.js';
import { defaultReplicaId } from '../lifecycle/collector/replica-id.js';
import { statusPageRoutes } from '../http/routes/status-page.js';
import { MirrorStatus } from '../status/mirror-status.js';
import { UpstreamHealth } from '../status/upstream-health.js';
import { errorText } from '../error-text.js';

export interface ServerOptions {
  config: MirrorConfig;
  storage: Storage;
  log: Logger;
  spoolParent?: string | undefined;
  checkCacheDigest?: boolean | undefined;
  redirectSeconds?: number | undefined;
  /** An extra observer of proxy and upstream events, besides the metrics. */
  observer?: (ProxyObserver & UpstreamObserver) | undefined;
  /** The Prometheus metrics; a fresh MirrorMetrics (own registry) when absent. */
  metrics?: MirrorMetrics | undefined;
  /** Serve /metrics on this separate address (started here) instead of on the main app. */
  metricsListen?: { host: string; port: number } | undefined;
  /** Never contact upstreams: serve only what the cache holds (`--offline`). */
  offline?: boolean | undefined;
  /** Names this process's access-time object, `access/<replicaId>`. Default `<hostname>-<pid>`. */
  replicaId?: string | undefined;
  /** Checks client_auth logins; a default one (bcrypt worker pool, failed-login limit) when absent. Closed with the server. */
  htpasswd?: HtpasswdVerifier | undefined;
  /** Bounded size and expiry; the collector runs every gcIntervalMs when maxCacheSize or expiryMs is set. */
  lifecycle?: LifecycleSettings | undefined;
  /** `--max-blob-size`, `--max-spool-size`; the defaults when absent. */
  downloads?: Partial<DownloadLimits> | undefined;
  /** Close a response whose client takes no bytes for this long (`--send-timeout`); default 60 s, 0: never. */
  sendTimeoutMs?: number | undefined;
  /** Registry API responses in progress per client address; more get 429 (`--max-connections-per-client`); 0 or unset: no cap. */
  maxConnectionsPerClient?: number | undefined;
  /** Serve the status page at `/` and `/status.json` (default true; `--no-status-page`). */
  statusPage?: boolean | undefined;
  /** Replicas that cooperate (`--peers`); the replica works alone when absent. */
  cluster?: ClusterSettings | undefined;
  /** Tests: resolves a `dns+http://` peer name instead of DNS, and how often. */
  clusterLookup?: { lookup?: LookupAddresses; refreshMs?: number } | undefined;
  now?: () => number;
}

export interface LifecycleSettings {
  maxCacheSize?: CacheSizeLimit | undefined;
  lowWaterPercent?: number | undefined;
  expiryMs?: number | undefined;
  graceMs?: number | undefined;
  /** 0: never scheduled (tests run server.collector.run() themselves). */
  gcIntervalMs?: number | undefined;
  accessFlushMs?: number | undefined;
}

export interface MirrorServer {
  app: FastifyInstance;
  mirror: Mirror;
  storage: Storage;
  metrics: MirrorMetrics;
  /** The separate /metrics listener, when metricsListen was given. */
  metricsApp: FastifyInstance | undefined;
  /** Records when blobs and manifests are served; flushed every minute and at close. */
  tracker: AccessTracker;
  /** The cache collector (scheduled only when a size limit or an expiry is set; run() works regardless). */
  collector: Collector;
  /** What the status page shows; undefined when it is turned off. */
  status: MirrorStatus | undefined;
  /** Last success and last error per upstream (the status page's); undefined when it is turned off. */
  upstreamHealth: UpstreamHealth | undefined;
  /** Membership, ownership and the peer client, with `cluster` settings; undefined for a replica alone. */
  cluster: Cluster | undefined;
  /** Stops accepting, lets running requests and downloads finish (up to the grace period), then closes. */
  close(graceMs?: number): Promise<void>;
}

/**
 * After the requests finished or the grace period ran out: how long aborting what is left, the last
 * access-time write and closing storage may take together. Shutdown never takes longer than grace + this.
 */
export const CLOSE_BUDGET_MS = 5000;

/** Waits for `work` at most `ms` (its failure counts as done); what is still running is left behind. */
async function within(work: Promise<unknown> | undefined, ms: number): Promise<void> {
  if (!work) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([work.catch(() => undefined), new Promise((r) => (timer = setTimeout(r, ms)))]);
  clearTimeout(timer);
}

/** Wires config, storage, upstream pool, cache policy and HTTP routes into one server (not yet listening). */
export async function createMirrorServer(options: ServerOptions): Promise<MirrorServer> {
  const { config, storage, log } = options;
  await storage.init();
  const spoolDir = await createSpoolDir(options.spoolParent);
  const metrics = options.metrics ?? new MirrorMetrics();
  const upstreamHealth = options.statusPage === false ? undefined : new UpstreamHealth((ns) => config.upstreams.has(ns), options.now);
  const observer = combineObservers(metrics, ...(upstreamHealth ? [upstreamHealth] : []), ...(options.observer ? [options.observer] : []));
  // Upstreams from the config (or UPSTREAM_CREDENTIALS) keep their clients; client-named ones are bounded.
  const upstreams = new UpstreamPool(observer, {
    isListed: (u) => config.upstreams.has(u.namespace),
    log,
    ...(options.now ? { now: options.now } : {}),
  });
  const lifecycle = options.lifecycle ?? {};
  const tracker = new AccessTracker({
    storage,
    log,
    replicaId: options.replicaId ?? defaultReplicaId(),
    flushIntervalMs: lifecycle.accessFlushMs,
    now: options.now,
  });
  const cluster = options.cluster
    ? new Cluster({ settings: options.cluster, log, observer: metrics.cluster, ...options.clusterLookup })
    : undefined;
  // One bucket is shared by every replica; a filesystem root belongs to its replica alone.
  const peers: PeerRouting | undefined = cluster
    ? { cluster, storage: storage.localRoot !== undefined ? 'own' : 'shared', keepCopies: cluster.settings.peerCacheCopies }
    : undefined;
  const mirror = new Mirror({
    storage,
    upstreams,
    log,
    spoolDir,
    observer,
    checkCacheDigest: options.checkCacheDigest,
    redirectSeconds: options.redirectSeconds,
    offline: options.offline,
    access: tracker,
    downloads: options.downloads,
    peers,
    ...(options.now ? { now: options.now } : {}),
  });
  const collector = new Collector({
    storage,
    log,
    tracker,
    inUse: (digest) => mirror.inUse(digest),
    maxSize: lifecycle.maxCacheSize,
    lowWaterPercent: lifecycle.lowWaterPercent,
    expiryMs: lifecycle.expiryMs,
    graceMs: lifecycle.graceMs,
    intervalMs: lifecycle.gcIntervalMs,
    filesystemRoot: storage.localRoot,
    onCollected: metrics.cacheCollected,
    now: options.now,
  });
  // A DNS membership is resolved before the first request, so the first requests already find their owners.
  await cluster?.start();
  const resolver = new Resolver(config);
  const htpasswd = options.htpasswd ?? new HtpasswdVerifier();
  const clientAuth = new ClientAuth(config, htpasswd);
  const status = upstreamHealth
    ? new MirrorStatus({
        config,
        resolver,
        storage,
        downloads: mirror.blobs,
        health: upstreamHealth,
        metrics: metrics.registry,
        log,
        offline: options.offline,
        maxCacheSize: lifecycle.maxCacheSize,
        lowWaterPercent: lifecycle.lowWaterPercent,
        filesystemRoot: storage.localRoot,
        recentAccess: (digest) => tracker.lastAccess(digest),
        now: options.now,
      })
    : undefined;
  const app = await buildApp({
    mirror,
    resolver,
    clientAuth,
    log,
    plugins: [
      async (a) => healthRoutes(a, { storage }),
      ...(status ? [async (a: FastifyInstance) => statusPageRoutes(a, { source: status, resolver, clientAuth })] : []),
      ...(options.metricsListen ? [] : [async (a: FastifyInstance) => metricsRoutes(a, { source: metrics.registry })]),
    ],
    onRequestDone: metrics.requestDone,
    limits: {
      sendTimeoutMs: options.sendTimeoutMs,
      maxConnectionsPerClient: options.maxConnectionsPerClient,
      onSendTimeout: metrics.sendTimedOut,
      onClientLimited: metrics.clientLimitHit,
    },
  });
  let metricsApp: FastifyInstance | undefined;
  if (options.metricsListen) {
    metricsApp = await buildMetricsApp(metrics.registry, log);
    await metricsApp.listen(options.metricsListen);
  }

  tracker.start();
  if (collector.enabled && lifecycle.gcIntervalMs !== 0) collector.start();

  let closing: Promise<void> | undefined;
  const close = (graceMs = 30_000): Promise<void> => {
    closing ??= (async () => {
      let timer: NodeJS.Timeout | undefined;
      const graceOver = new Promise<'grace over'>((r) => (timer = setTimeout(() => r('grace over'), graceMs)));
      // app.close() stops accepting and waits for in-flight requests; downloads finish for the cache.
      // A keep-alive connection whose response ends after that would hold the close until its idle
      // timeout, so connections are closed as soon as they go idle.
      const sweep = setInterval(() => app.server.closeIdleConnections(), 100);
      const settled = Promise.all([app.close(), mirror.drain(), collector.stop()]);
      // The upstream pools close last and wait for their running requests too: a manifest fetch whose
      // client has left is in no response and no download, yet holds its pool until the upstream answers.
      const finished = settled.then(() => upstreams.close()).then(() => 'finished' as const);
      const how = await Promise.race([finished, graceOver]);
      clearTimeout(timer);
      clearInterval(sweep);
      // Every remaining step shares one fixed budget, so the process exits within grace + CLOSE_BUDGET_MS
      // whatever hangs (an upstream, a storage call, a scrape).
      const budgetEnd = Date.now() + CLOSE_BUDGET_MS;
      const left = () => Math.max(0, budgetEnd - Date.now());
      if (how === 'grace over') {
        log.warn({ graceMs, downloads: mirror.blobs.inflightCount }, 'shutdown grace period over: aborting running requests and downloads');
        // Each running download fails and discards its temp file; its clients' responses are cut.
        await within(upstreams.destroy(), left());
        app.server.closeAllConnections();
        await within(settled, left());
      }
      await within(metricsApp?.close(), left());
      await within(cluster?.close(), left());
      // The last access times, so that a restart (or another replica) knows them.
      await within(
        tracker.stop().catch((e: unknown) => log.warn({ err: errorText(e) }, 'could not write access times at shutdown')),
        left(),
      );
      await within(storage.close(), left());
      await within(htpasswd.close(), left());
      await rm(spoolDir, { recursive: true, force: true }).catch(() => undefined);
    })();
    return closing;
  };
  return { app, mirror, storage, metrics, metricsApp, tracker, collector, status, upstreamHealth, cluster, close };
}
