import { createLogger } from '../log.js';
import { CLOSE_BUDGET_MS, createMirrorServer } from '../server/create-server.js';
import { createStorage } from '../storage/create-storage.js';
import { verifyCache } from '../lifecycle/collector/verify-cache.js';
import { startPreload } from '../lifecycle/prefetch/preload.js';
import { Resolver } from '../resolve/resolver.js';
import { serverSettings, type ServerCommandOptions } from './server-settings.js';
import { errorText } from '../error-text.js';

/** Presigned URLs are checked when a download starts, so a short expiry does not cut long transfers. */
const PRESIGNED_URL_SECONDS = 300;

export type { ServerCommandOptions } from './server-settings.js';

/** The server command: load and check everything, listen, and shut down gracefully on SIGTERM/SIGINT. */
export async function runServer(opts: ServerCommandOptions): Promise<void> {
  const { listen, graceMs, metricsListen, lifecycle, downloads, connectionLimits, config, cluster } = serverSettings(opts);
  const log = createLogger(opts.logLevel);
  const storage = await createStorage(opts.storage, log);
  const server = await createMirrorServer({
    config,
    storage,
    log,
    spoolParent: opts.spoolDir,
    checkCacheDigest: opts.checkCacheDigest,
    metricsListen,
    statusPage: opts.statusPage,
    redirectSeconds: opts.storage.kind === 's3' && opts.storage.redirect ? PRESIGNED_URL_SECONDS : undefined,
    downloads,
    cluster,
    ...lifecycle,
    ...connectionLimits,
  });
  if (opts.verifyCache) await verifyCache(storage, log);
  await server.app.listen({ host: listen.host, port: listen.port });
  const addr = server.app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : listen.port;
  const host = listen.host.includes(':') ? `[${listen.host}]` : listen.host;
  const metricsAddr = server.metricsApp?.server.address();
  log.info(
    {
      url: `http://${host}:${port}`,
      metricsUrl:
        metricsAddr && typeof metricsAddr === 'object'
          ? `http://${metricsAddr.family === 'IPv6' ? `[${metricsAddr.address}]` : metricsAddr.address}:${metricsAddr.port}/metrics`
          : `http://${host}:${port}/metrics`,
      storage: storage.kind,
      upstreams: [...config.upstreams.keys()],
      configFile: config.configFile,
      unlisted: config.allowUnlisted,
      ...(lifecycle.offline ? { offline: true } : {}),
      ...(cluster ? { advertise: cluster.advertise, peers: server.cluster?.membership.members().length } : {}),
      ...(opts.maxCacheSize ? { maxCacheSize: opts.maxCacheSize } : {}),
      ...(opts.cacheExpiry ? { cacheExpiry: opts.cacheExpiry } : {}),
    },
    'listening',
  );
  // --preload warms the cache in the background; serving never waits for it.
  const preload = opts.preload ? startPreload(opts.preload, { mirror: server.mirror, resolver: new Resolver(config), log }) : undefined;

  const stop = (signal: string) => {
    log.info({ signal, graceMs }, 'shutting down');
    preload?.abort();
    // A last fence: close() is bounded step by step, but nothing may keep a terminating process alive.
    setTimeout(
      () => {
        log.error({ graceMs }, 'shutdown did not finish in time; exiting');
        process.exit(1);
      },
      graceMs + CLOSE_BUDGET_MS + 2000,
    ).unref();
    void server.close(graceMs).then(
      () => process.exit(0),
      (e: unknown) => {
        log.error({ err: errorText(e) }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}
