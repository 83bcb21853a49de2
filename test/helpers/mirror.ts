import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { defaultUpstreamSettings, loadMirrorConfig } from '../../src/config/upstreams.js';
import type { MirrorConfig, UpstreamConfig } from '../../src/config/types.js';
import { createLogger } from '../../src/log.js';
import { createMirrorServer, type MirrorServer, type ServerOptions } from '../../src/server/create-server.js';
import { FilesystemStorage } from '../../src/storage/filesystem/filesystem-storage.js';
import type { Storage } from '../../src/storage/storage.js';

export interface TestUpstream extends Partial<Omit<UpstreamConfig, 'namespace' | 'host'>> {
  namespace: string;
  host: string;
}

export interface StartMirrorOptions {
  upstreams?: TestUpstream[];
  /** Mirror unlisted namespaces (as without a config file). Default false when upstreams are given. */
  allowUnlisted?: boolean;
  defaultNamespace?: string;
  storage?: Storage;
  root?: string;
  checkCacheDigest?: boolean;
  now?: () => number;
  log?: Logger;
  observer?: ServerOptions['observer'];
  redirectSeconds?: number;
  /** Serve from the cache only (`--offline`). */
  offline?: boolean;
  /** Size bound, expiry, grace; tests usually set gcIntervalMs 0 and call server.collector.run(). */
  lifecycle?: ServerOptions['lifecycle'];
  replicaId?: string;
  /** `--max-blob-size`, `--max-spool-size`. */
  downloads?: ServerOptions['downloads'];
  /** The client_auth verifier (e.g. without its failed-login limit). */
  htpasswd?: ServerOptions['htpasswd'];
  /** `--send-timeout` in ms (default 60 s; 0: never). */
  sendTimeoutMs?: number;
  /** `--max-connections-per-client` (default: no cap). */
  maxConnectionsPerClient?: number;
  /** Default true: serve the status page at / (false: as --no-status-page). */
  statusPage?: boolean;
  /** `--peers` and friends, and a test resolver for `dns+http://` names. */
  cluster?: ServerOptions['cluster'];
  clusterLookup?: ServerOptions['clusterLookup'];
  /** Where to listen. Default 127.0.0.1 and an ephemeral port. */
  listen?: { host: string; port: number };
}

export interface TestMirror {
  url: string;
  server: MirrorServer;
  root: string;
  storage: Storage;
  /** Waits until what was served has been stored: downloads commit and manifests are written behind responses. */
  settled(): Promise<void>;
  close(): Promise<void>;
}

/** Builds a MirrorConfig in memory the way loadMirrorConfig would from YAML. */
export function testConfig(options: StartMirrorOptions): MirrorConfig {
  const base = loadMirrorConfig({ defaultNamespace: options.defaultNamespace });
  const upstreams = new Map<string, UpstreamConfig>();
  for (const u of options.upstreams ?? []) {
    upstreams.set(u.namespace, { ...defaultUpstreamSettings(), tls: false, explicit: true, ...u });
  }
  return { ...base, upstreams, allowUnlisted: options.allowUnlisted ?? options.upstreams === undefined };
}

/** The mirror in this process, on 127.0.0.1 and an ephemeral port, with a temp filesystem cache. */
export async function startMirror(options: StartMirrorOptions = {}): Promise<TestMirror> {
  const root = options.root ?? (await mkdtemp(join(tmpdir(), 'oci-mirror-test-')));
  const storage = options.storage ?? new FilesystemStorage(root);
  const server = await createMirrorServer({
    config: testConfig(options),
    storage,
    log: options.log ?? createLogger((process.env['TEST_LOG_LEVEL'] as 'info' | undefined) ?? 'silent'),
    spoolParent: join(root, '..', `${root.split('/').pop() ?? 'x'}-spool`),
    checkCacheDigest: options.checkCacheDigest,
    redirectSeconds: options.redirectSeconds,
    observer: options.observer,
    offline: options.offline,
    lifecycle: options.lifecycle,
    replicaId: options.replicaId,
    downloads: options.downloads,
    htpasswd: options.htpasswd,
    sendTimeoutMs: options.sendTimeoutMs,
    maxConnectionsPerClient: options.maxConnectionsPerClient,
    statusPage: options.statusPage,
    cluster: options.cluster,
    clusterLookup: options.clusterLookup,
    ...(options.now ? { now: options.now } : {}),
  });
  const host = options.listen?.host ?? '127.0.0.1';
  await server.app.listen({ host, port: options.listen?.port ?? 0 });
  const addr = server.app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    url: `http://${host}:${port}`,
    server,
    root,
    storage,
    settled: () => server.mirror.drain(),
    close: async () => {
      await server.close(2000);
      if (!options.root) await rm(root, { recursive: true, force: true });
      await rm(join(root, '..', `${root.split('/').pop() ?? 'x'}-spool`), { recursive: true, force: true });
    },
  };
}
