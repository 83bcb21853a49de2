/**
 * The things measured, one at a time, against the same upstream. Each `start()` brings up a fresh
 * instance with an empty cache (a new temp dir), so every repetition of a cold test sees uncached blobs.
 */
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Upstream } from './upstream.js';
import { freePort, removeDir, startProcess, tempDir, waitHttp, which, type ManagedProcess } from './util.js';

export type TestKind = 'cold' | 'warm' | 'manifest' | 'herd' | 'resources';

export interface Bins {
  node: string;
  registry: string | undefined;
  nginx: string | undefined;
  mirrorMain: string;
  s3rver: string | undefined;
}

export interface PeerContext {
  tmp: string;
  upstream: Upstream;
  /** The same storage behind Docker token auth (like Docker Hub), for distribution-auth. */
  authUpstream: Upstream | undefined;
  bins: Bins;
  /** Directory nginx-static serves as its root (holds v2/<name>/blobs/<digest> for the big blob). */
  staticRoot: string;
}

export interface PeerInstance {
  url: string;
  /** Root of the process tree that is measured (RSS, CPU); undefined when nothing to measure. */
  pid: number | undefined;
  /** Processes started for this instance (to detect crashes and collect their last output). */
  procs: ManagedProcess[];
  stop(): Promise<void>;
}

export interface PeerDef {
  id: string;
  label: string;
  tests: ReadonlySet<TestKind>;
  /** The upstream this peer talks to (default ctx.upstream). */
  upstreamOf?(ctx: PeerContext): Upstream;
  /** Why the peer cannot run here (binary missing), or undefined. */
  missing(ctx: PeerContext): string | undefined;
  start(ctx: PeerContext): Promise<PeerInstance>;
}

const ALL: ReadonlySet<TestKind> = new Set(['cold', 'warm', 'manifest', 'herd', 'resources']);

// ---------- our mirror ----------

async function startMirror(
  ctx: PeerContext,
  storageArgs: (dir: string) => Promise<{ args: string[]; extra: ManagedProcess[]; cleanup?: () => Promise<void> }>,
): Promise<PeerInstance> {
  const dir = await tempDir(ctx.tmp, 'mirror-');
  const configFile = join(dir, 'upstreams.yaml');
  await writeFile(configFile, `- namespace: docker.io\n  host: ${ctx.upstream.host}\n  tls: false\n`);
  const storage = await storageArgs(dir);
  const port = await freePort();
  // The AWS SDK's "upgrade to node 22" notice is not a problem of the mirror: keep it out of the log.
  const env: NodeJS.ProcessEnv = { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' };
  delete env['NODE_OPTIONS'];
  const proc = startProcess(
    'mirror',
    ctx.bins.node,
    [
      ctx.bins.mirrorMain,
      '--listen',
      `127.0.0.1:${port}`,
      '--upstream-config-file',
      configFile,
      '--log-level',
      'warn',
      '--shutdown-grace-period',
      '2s',
      ...storage.args,
    ],
    { env },
  );
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitHttp(`${url}/v2/`, 30_000, proc, 200);
  } catch (e) {
    await proc.stop('SIGKILL');
    for (const p of storage.extra) await p.stop('SIGKILL');
    throw e;
  }
  return {
    url,
    pid: proc.pid,
    procs: [proc, ...storage.extra],
    async stop() {
      await proc.stop('SIGTERM', 5000);
      for (const p of storage.extra) await p.stop('SIGTERM', 5000);
      await storage.cleanup?.();
      await removeDir(dir);
    },
  };
}

const mirrorFs: PeerDef = {
  id: 'mirror-fs',
  label: 'oci-registry (filesystem)',
  tests: ALL,
  missing: (ctx) => (existsSync(ctx.bins.mirrorMain) ? undefined : `${ctx.bins.mirrorMain} not built (npm run build)`),
  start: (ctx) =>
    startMirror(ctx, async (dir) => {
      const root = join(dir, 'cache');
      await mkdir(root);
      return { args: ['filesystem', '--root', root], extra: [] };
    }),
};

const S3_BUCKET = 'cache-bucket';

const mirrorS3: PeerDef = {
  id: 'mirror-s3',
  label: 'oci-registry (S3 on s3rver)',
  tests: ALL,
  missing: (ctx) =>
    !existsSync(ctx.bins.mirrorMain)
      ? `${ctx.bins.mirrorMain} not built (npm run build)`
      : ctx.bins.s3rver
        ? undefined
        : 'node_modules/s3rver missing',
  start: (ctx) =>
    startMirror(ctx, async (dir) => {
      const data = join(dir, 's3rver');
      const spool = join(dir, 'spool');
      await mkdir(data);
      await mkdir(spool);
      const port = await freePort();
      const s3 = startProcess('s3rver', ctx.bins.node, [
        ctx.bins.s3rver!,
        '-d',
        data,
        '-a',
        '127.0.0.1',
        '-p',
        String(port),
        '-s',
        '--configure-bucket',
        S3_BUCKET,
      ]);
      await waitHttp(`http://127.0.0.1:${port}/`, 20_000, s3);
      return {
        args: [
          '--spool-dir',
          spool,
          's3',
          '--bucket',
          S3_BUCKET,
          '--host',
          `http://127.0.0.1:${port}`,
          '--access-key',
          'S3RVER',
          '--secret-key',
          'S3RVER',
        ],
        extra: [s3],
      };
    }),
};

// ---------- CNCF distribution in proxy mode ----------

export const AUTH_USER = 'bench';
export const AUTH_PASSWORD = 'bench';

async function startDistribution(ctx: PeerContext, upstream: Upstream, credentials: boolean): Promise<PeerInstance> {
  const dir = await tempDir(ctx.tmp, 'distribution-');
  const port = await freePort();
  const config = join(dir, 'config.yml');
  await writeFile(
    config,
    [
      'version: 0.1',
      'log:',
      '  level: error',
      '  formatter: text',
      '  accesslog:',
      '    disabled: true',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${join(dir, 'storage')}`,
      '  cache:',
      '    blobdescriptor: inmemory',
      '  delete:',
      '    enabled: true',
      'http:',
      `  addr: 127.0.0.1:${port}`,
      '  secret: bench-proxy-secret',
      'proxy:',
      `  remoteurl: ${upstream.url}`,
      ...(credentials ? [`  username: ${AUTH_USER}`, `  password: ${AUTH_PASSWORD}`] : []),
      '',
    ].join('\n'),
  );
  return startRegistryProcess('distribution proxy', ctx.bins.registry!, ['serve', config], port, dir);
}

/** Starts a process that serves the registry API on `port`, once its /v2/ answers 200; stop() also removes `dir`. */
async function startRegistryProcess(name: string, bin: string, args: string[], port: number, dir: string): Promise<PeerInstance> {
  const proc = startProcess(name, bin, args);
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitHttp(`${url}/v2/`, 20_000, proc, 200);
  } catch (e) {
    await proc.stop('SIGKILL');
    throw e;
  }
  return {
    url,
    pid: proc.pid,
    procs: [proc],
    async stop() {
      await proc.stop('SIGTERM', 5000);
      await removeDir(dir);
    },
  };
}

const distribution: PeerDef = {
  id: 'distribution',
  label: 'distribution 2.8 proxy',
  tests: ALL,
  missing: (ctx) => (ctx.bins.registry ? undefined : 'docker-registry not installed'),
  start: (ctx) => startDistribution(ctx, ctx.upstream, false),
};

/**
 * distribution's proxy pings the upstream's /v2/ before every request, under a mutex, as long as it
 * has no auth challenge cached for it - which is always the case for an anonymous upstream. Against an
 * upstream that answers /v2/ with a Bearer challenge (Docker Hub; here the same storage behind a token
 * server) it pings once. This variant shows distribution without that handicap. (distribution 2.8's
 * proxy only authenticates with Bearer tokens, not Basic.)
 */
const distributionAuth: PeerDef = {
  id: 'distribution-auth',
  label: 'distribution 2.8 proxy, token-auth upstream',
  tests: ALL,
  upstreamOf: (ctx) => ctx.authUpstream ?? ctx.upstream,
  missing: (ctx) =>
    !ctx.bins.registry ? 'docker-registry not installed' : ctx.authUpstream ? undefined : 'no token-auth upstream (openssl missing?)',
  start: (ctx) => startDistribution(ctx, ctx.authUpstream!, true),
};

// ---------- nginx ----------

async function startNginx(
  ctx: PeerContext,
  name: string,
  server: (dir: string, port: number) => string,
  httpExtra: (dir: string) => string,
): Promise<PeerInstance> {
  const dir = await tempDir(ctx.tmp, `${name}-`);
  for (const d of ['client_body', 'proxy_temp', 'fastcgi_temp', 'uwsgi_temp', 'scgi_temp', 'cache']) await mkdir(join(dir, d));
  const port = await freePort();
  const conf = join(dir, 'nginx.conf');
  await writeFile(
    conf,
    `daemon off;
master_process on;
${process.getuid?.() === 0 ? 'user root;\n' : ''}
worker_processes 2;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  default_type application/octet-stream;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy_temp;
  fastcgi_temp_path ${dir}/fastcgi_temp;
  uwsgi_temp_path ${dir}/uwsgi_temp;
  scgi_temp_path ${dir}/scgi_temp;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_timeout 65;
  keepalive_requests 1000000;
${httpExtra(dir)}
  server {
    listen 127.0.0.1:${port};
${server(dir, port)}
  }
}
`,
  );
  const proc = startProcess(name, ctx.bins.nginx!, ['-p', dir, '-c', conf, '-e', join(dir, 'error.log')]);
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitHttp(`${url}/`, 20_000, proc);
  } catch (e) {
    await proc.stop('SIGKILL');
    throw e;
  }
  return {
    url,
    pid: proc.pid,
    procs: [proc],
    async stop() {
      await proc.stop('SIGTERM', 5000);
      await removeDir(dir);
    },
  };
}

const nginxCache: PeerDef = {
  id: 'nginx-cache',
  label: 'nginx proxy_cache',
  tests: ALL,
  missing: (ctx) => (ctx.bins.nginx ? undefined : 'nginx not installed'),
  start: (ctx) =>
    startNginx(
      ctx,
      'nginx-cache',
      () => `    location /v2/ {
      proxy_pass http://registry;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_buffering on;
      proxy_cache oci;
      proxy_cache_key "$request_uri|$http_accept";
      proxy_cache_methods GET HEAD;
      proxy_cache_valid 200 1h;
      proxy_ignore_headers Cache-Control Expires Set-Cookie;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 10m;
      proxy_cache_lock_age 10m;
      add_header X-Cache-Status $upstream_cache_status;
    }
    location / { return 404; }`,
      (dir) => `  proxy_cache_path ${dir}/cache levels=1:2 keys_zone=oci:32m max_size=50g inactive=1d use_temp_path=off;
  upstream registry {
    server ${ctx.upstream.host};
    keepalive 64;
  }`,
    ),
};

const nginxStatic: PeerDef = {
  id: 'nginx-static',
  label: 'nginx static (sendfile)',
  tests: new Set(['warm', 'resources']),
  missing: (ctx) => (ctx.bins.nginx ? undefined : 'nginx not installed'),
  start: (ctx) =>
    startNginx(
      ctx,
      'nginx-static',
      () => `    root ${ctx.staticRoot};
    location / { }`,
      () => '',
    ),
};

// ---------- the platform's floor ----------

/** A bare Node proxy (node-floor.ts): hash, forward, store; manifests from memory. No policy at all. */
const nodeFloor: PeerDef = {
  id: 'node-floor',
  label: 'bare Node proxy (floor)',
  tests: new Set(['cold', 'warm', 'manifest', 'resources']),
  missing: () => undefined,
  async start(ctx) {
    const dir = await tempDir(ctx.tmp, 'node-floor-');
    const port = await freePort();
    const script = join(dirname(fileURLToPath(import.meta.url)), 'node-floor.js');
    return startRegistryProcess('node-floor', ctx.bins.node, [script, String(port), ctx.upstream.url, dir], port, dir);
  },
};

// ---------- the upstream itself ----------

const direct: PeerDef = {
  id: 'direct',
  label: 'direct (upstream)',
  tests: new Set(['cold', 'warm', 'manifest']),
  missing: () => undefined,
  async start(ctx) {
    return { url: ctx.upstream.url, pid: ctx.upstream.proc.pid, procs: [], stop: async () => {} };
  },
};

/** Peers that only run when named with --peers= (or, for mirror-s3, with --s3). */
export const OPT_IN = new Set(['mirror-s3', 'distribution-auth']);

export const PEERS: PeerDef[] = [nginxStatic, direct, nodeFloor, mirrorFs, mirrorS3, distribution, distributionAuth, nginxCache];

export function findBins(repoRoot: string, mirrorMain: string): Bins {
  const s3rver = join(repoRoot, 'node_modules', 's3rver', 'bin', 's3rver.js');
  return {
    node: process.execPath,
    registry: which(process.env['BENCH_REGISTRY_BIN'] ?? 'docker-registry'),
    nginx: which(process.env['BENCH_NGINX_BIN'] ?? 'nginx'),
    mirrorMain,
    s3rver: existsSync(s3rver) ? s3rver : undefined,
  };
}
