/**
 * The upstream: a real CNCF distribution (`docker-registry`) on 127.0.0.1 with filesystem storage and
 * its access log on, seeded over the registry HTTP API with generated images. Its access log lines
 * (`127.0.0.1 - - [..] "GET /v2/<name>/blobs/sha256:... HTTP/1.1" 200 <bytes> ...`) are parsed as they
 * arrive, so a test can count the upstream downloads it caused.
 */
import { createHash, randomBytes, randomFillSync } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { once } from 'node:events';
import { request } from 'undici';
import { freePort, log, sleep, startProcess, waitHttp, type ManagedProcess } from './util.js';

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar';
/** What containerd sends (minus `*\/*`), used for every manifest request of the bench. */
export const MANIFEST_ACCEPT = [
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
].join(', ');

export interface Blob {
  digest: string;
  size: number;
}

export interface Image {
  /** Repository name, e.g. `bench/small-seq`. */
  name: string;
  tag: string;
  manifestDigest: string;
  manifestSize: number;
  config: Blob;
  layers: Blob[];
}

export interface AccessEntry {
  method: string;
  path: string;
  status: number;
  bytes: number;
}

export interface Upstream {
  url: string;
  storage: string;
  host: string;
  proc: ManagedProcess;
  /** Parsed access log so far. */
  entries: AccessEntry[];
  /** Number of entries so far (a position to count from). */
  mark(): number;
  since(mark: number): AccessEntry[];
  /** Resolves once no access log line arrived for `quietMs` (max `timeoutMs`). */
  quiesce(quietMs?: number, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

const ACCESS_RE = /"(GET|HEAD|PUT|POST|PATCH|DELETE) ([^ "]+) HTTP\/[\d.]+" (\d{3}) (\d+|-)/;

export interface UpstreamOptions {
  /** Serve this storage directory (another upstream's) instead of a new one. */
  storage?: string;
  /** Require Docker token auth (`auth: token`) from this token server, like Docker Hub. */
  tokenAuth?: { realm: string; service: string; issuer: string; certFile: string };
}

export async function startUpstream(dir: string, bin: string, opts: UpstreamOptions = {}): Promise<Upstream> {
  const port = await freePort();
  const storage = opts.storage ?? join(dir, 'storage');
  await mkdir(storage, { recursive: true });
  const configFile = join(dir, 'config.yml');
  const auth: string[] = [];
  if (opts.tokenAuth) {
    const t = opts.tokenAuth;
    auth.push(
      'auth:',
      '  token:',
      `    realm: ${t.realm}`,
      `    service: ${t.service}`,
      `    issuer: ${t.issuer}`,
      `    rootcertbundle: ${t.certFile}`,
    );
  }
  await writeFile(
    configFile,
    [
      'version: 0.1',
      'log:',
      '  level: warn',
      '  formatter: text',
      '  accesslog:',
      '    disabled: false',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${storage}`,
      '  delete:',
      '    enabled: true',
      '  maintenance:',
      '    uploadpurging:',
      '      enabled: false',
      'http:',
      `  addr: 127.0.0.1:${port}`,
      '  secret: bench-upstream-secret',
      ...auth,
      '',
    ].join('\n'),
  );
  const entries: AccessEntry[] = [];
  let lastLineAt = Date.now();
  const proc = startProcess('upstream docker-registry', bin, ['serve', configFile], {
    keepLines: false,
    onLine: (line) => {
      const m = ACCESS_RE.exec(line);
      if (!m) return;
      lastLineAt = Date.now();
      const rawPath = m[2]!;
      const q = rawPath.indexOf('?');
      entries.push({
        method: m[1]!,
        path: q >= 0 ? rawPath.slice(0, q) : rawPath,
        status: Number(m[3]),
        bytes: m[4] === '-' ? 0 : Number(m[4]),
      });
    },
  });
  const url = `http://127.0.0.1:${port}`;
  await waitHttp(`${url}/v2/`, 20_000, proc, opts.tokenAuth ? 401 : 200);
  return {
    url,
    storage,
    host: `127.0.0.1:${port}`,
    proc,
    entries,
    mark: () => entries.length,
    since: (mark) => entries.slice(mark),
    async quiesce(quietMs = 1000, timeoutMs = 120_000) {
      const deadline = Date.now() + timeoutMs;
      await sleep(Math.min(quietMs, 300));
      while (Date.now() - lastLineAt < quietMs && Date.now() < deadline) await sleep(100);
    },
    async stop() {
      await proc.stop('SIGTERM', 5000);
    },
  };
}

/** Counts GETs of `/v2/.../blobs/<digest>` (answered 200 or 206) among `entries`. */
export function blobDownloads(entries: AccessEntry[], digest: string): { count: number; bytes: number } {
  let count = 0;
  let bytes = 0;
  for (const e of entries) {
    if (e.method === 'GET' && e.path.endsWith(`/blobs/${digest}`) && (e.status === 200 || e.status === 206)) {
      count++;
      bytes += e.bytes;
    }
  }
  return { count, bytes };
}

// ---------- seeding over the registry API ----------

async function uploadBlob(
  upstream: string,
  name: string,
  digest: string,
  size: number,
  body: Buffer | (() => NodeJS.ReadableStream),
): Promise<void> {
  const head = await request(`${upstream}/v2/${name}/blobs/${digest}`, { method: 'HEAD' });
  await head.body.dump();
  if (head.statusCode === 200) return;
  const post = await request(`${upstream}/v2/${name}/blobs/uploads/`, { method: 'POST' });
  await post.body.dump();
  const location = post.headers['location'];
  if (post.statusCode !== 202 || typeof location !== 'string') throw new Error(`POST blobs/uploads/ for ${name}: HTTP ${post.statusCode}`);
  const target = new URL(location, upstream);
  target.searchParams.set('digest', digest);
  const put = await request(target.toString(), {
    method: 'PUT',
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
    body: Buffer.isBuffer(body) ? body : (body() as unknown as NodeJS.ReadableStream as never),
  });
  const text = await put.body.text();
  if (put.statusCode !== 201) throw new Error(`PUT blob ${digest} for ${name}: HTTP ${put.statusCode} ${text.slice(0, 300)}`);
}

function sha256(buf: Buffer): string {
  return `sha256:${createHash('sha256').update(buf).digest('hex')}`;
}

/** Writes `size` random (incompressible) bytes to `file`; returns the digest. */
async function randomFile(file: string, size: number): Promise<string> {
  const hash = createHash('sha256');
  const out = createWriteStream(file);
  const chunk = Buffer.allocUnsafe(4 * 1024 * 1024);
  let left = size;
  while (left > 0) {
    const n = Math.min(left, chunk.length);
    randomFillSync(chunk, 0, n);
    const piece = Buffer.from(chunk.subarray(0, n)); // copy: the stream may still hold the previous one
    hash.update(piece);
    if (!out.write(piece)) await once(out, 'drain');
    left -= n;
  }
  out.end();
  await once(out, 'finish');
  return `sha256:${hash.digest('hex')}`;
}

async function pushManifest(
  upstream: string,
  name: string,
  tag: string,
  config: Blob,
  layers: Blob[],
): Promise<{ digest: string; size: number }> {
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: config.digest, size: config.size },
      layers: layers.map((l) => ({ mediaType: OCI_LAYER, digest: l.digest, size: l.size })),
      annotations: { 'org.opencontainers.image.description': 'oci-registry bench image' },
    }),
  );
  const res = await request(`${upstream}/v2/${name}/manifests/${tag}`, {
    method: 'PUT',
    headers: { 'content-type': OCI_MANIFEST },
    body: manifest,
  });
  const text = await res.body.text();
  if (res.statusCode !== 201) throw new Error(`PUT manifest ${name}:${tag}: HTTP ${res.statusCode} ${text.slice(0, 300)}`);
  return { digest: sha256(manifest), size: manifest.length };
}

async function pushConfig(upstream: string, name: string, layers: Blob[]): Promise<Blob> {
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      created: new Date().toISOString(),
      config: {},
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
    }),
  );
  const blob = { digest: sha256(config), size: config.length };
  await uploadBlob(upstream, name, blob.digest, blob.size, config);
  return blob;
}

/** An image of `count` layers of `size` random bytes each, generated in memory. */
export async function seedSmallImage(upstream: string, name: string, count: number, size: number): Promise<Image> {
  const layers: Blob[] = [];
  for (let i = 0; i < count; i++) {
    const data = randomBytes(size);
    const blob = { digest: sha256(data), size };
    await uploadBlob(upstream, name, blob.digest, size, data);
    layers.push(blob);
  }
  const config = await pushConfig(upstream, name, layers);
  const m = await pushManifest(upstream, name, 'latest', config, layers);
  return { name, tag: 'latest', manifestDigest: m.digest, manifestSize: m.size, config, layers };
}

/** An image of one layer of `size` random bytes, generated into `file` (kept: nginx serves it statically). */
export async function seedBigImage(upstream: string, name: string, size: number, file: string): Promise<Image> {
  const started = Date.now();
  const digest = await randomFile(file, size);
  await uploadBlob(upstream, name, digest, size, () => createReadStream(file, { highWaterMark: 1024 * 1024 }));
  const layers = [{ digest, size }];
  const config = await pushConfig(upstream, name, layers);
  const m = await pushManifest(upstream, name, 'latest', config, layers);
  log(
    `seeded ${name}: ${(size / 1024 / 1024).toFixed(0)} MiB layer ${digest.slice(0, 19)}… in ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
  return { name, tag: 'latest', manifestDigest: m.digest, manifestSize: m.size, config, layers };
}
