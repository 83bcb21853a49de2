import { rm } from 'node:fs/promises';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { MirrorConfig } from '../config/types.js';
import { HtpasswdVerifier } from '../auth/htpasswd.js';
import { buildApp } from '../http/app.js';
import { ClientAuth } from '../http/client-auth.js';
import { healthRoutes } from '../http/routes/health.js';
import type { ProxyObserver } from '../proxy/events.js';
import { Mirror } from '../proxy/mirror.js';
import { Resolver } from '../resolve/resolver.js';
import type { Storage } from '../storage/storage.js';
import { UpstreamPool } from '../upstream/upstream-pool.js';
import type { UpstreamObserver } from '../upstream/upstream-client.js';
import { createSpoolDir } from './spool-dir.js';

export interface ServerOptions {
  config: MirrorConfig;
  storage: Storage;
  log: Logger;
  spoolParent?: string | undefined;
  checkCacheDigest?: boolean | undefined;
  redirectSeconds?: number | undefined;
  observer?: (ProxyObserver & UpstreamObserver) | undefined;
  now?: () => number;
}

export interface MirrorServer {
  app: FastifyInstance;
  mirror: Mirror;
  storage: Storage;
  /** Stops accepting, lets running requests and downloads finish (up to the grace period), then closes. */
  close(graceMs?: number): Promise<void>;
}

/** Wires config, storage, upstream pool, cache policy and HTTP routes into one server (not yet listening). */
export async function createMirrorServer(options: ServerOptions): Promise<MirrorServer> {
  const { config, storage, log } = options;
  await storage.init();
  const spoolDir = await createSpoolDir(options.spoolParent);
  const upstreams = new UpstreamPool(options.observer);
  const mirror = new Mirror({
    storage,
    upstreams,
    log,
    spoolDir,
    observer: options.observer,
    checkCacheDigest: options.checkCacheDigest,
    redirectSeconds: options.redirectSeconds,
    ...(options.now ? { now: options.now } : {}),
  });
  const resolver = new Resolver(config);
  const app = await buildApp({
    mirror,
    resolver,
    clientAuth: new ClientAuth(config, new HtpasswdVerifier()),
    log,
    plugins: [async (a) => healthRoutes(a, { storage })],
  });

  let closing: Promise<void> | undefined;
  const close = (graceMs = 30_000): Promise<void> => {
    closing ??= (async () => {
      const timer = new Promise<void>((r) => setTimeout(r, graceMs).unref());
      // app.close() stops accepting and waits for in-flight requests; downloads finish for the cache.
      await Promise.race([Promise.all([app.close(), mirror.blobs.drain()]), timer]);
      await upstreams.close();
      await storage.close();
      await rm(spoolDir, { recursive: true, force: true }).catch(() => undefined);
    })();
    return closing;
  };
  return { app, mirror, storage, close };
}
