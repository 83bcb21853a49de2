/**
 * Prefetch: images pulled into an empty cache through the mirror's own cache policy, then served by a
 * mirror on that cache with the upstream stopped.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { createLogger } from '../../../src/log.js';
import { parsePlatformList } from '../../../src/lifecycle/manifest-refs.js';
import { prefetchImages, type PrefetchOptions, type PrefetchResult } from '../../../src/lifecycle/prefetch/prefetch.js';
import { Mirror } from '../../../src/proxy/mirror.js';
import { Resolver } from '../../../src/resolve/resolver.js';
import { createSpoolDir } from '../../../src/server/spool-dir.js';
import { FilesystemStorage } from '../../../src/storage/filesystem/filesystem-storage.js';
import { UpstreamPool } from '../../../src/upstream/upstream-pool.js';
import { makeImage, makeIndex, type Image, type Index } from '../../fixtures/images.js';
import { startFixtureUpstream, type FixtureUpstream } from '../../fixtures/upstream.js';
import { startMirror, testConfig, type TestMirror, type TestUpstream } from '../../helpers/mirror.js';
import { startMirrorProcess } from '../../helpers/mirror-process.js';
import { runCli } from '../../helpers/run-cli.js';

const NS = 'fixture.test';
const ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

interface Env {
  up: FixtureUpstream;
  upstreams: TestUpstream[];
  root: string;
  multi: Index;
  single: Image;
}

async function setup(t: Test): Promise<Env> {
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  const root = await mkdtemp(join(tmpdir(), 'prefetch-test-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const multi = makeIndex(
    [
      await makeImage({ format: 'oci', layers: 2, layerSize: 64 << 10, seed: 101, architecture: 'amd64' }),
      await makeImage({ format: 'oci', layers: 1, layerSize: 64 << 10, seed: 102, architecture: 'arm64', variant: 'v8' }),
    ],
    'oci',
  );
  const single = await makeImage({ format: 'docker', layers: 1, layerSize: 32 << 10, seed: 103 });
  publish(up, 'org/multi', 'v1', multi);
  publish(up, 'org/single', '1.0', single);
  return { up, upstreams: [{ namespace: NS, host: up.host }], root, multi, single };
}

function publish(up: FixtureUpstream, repo: string, tag: string, item: Image | Index): void {
  const images = item.kind === 'index' ? item.images : [item];
  for (const img of images) {
    up.addBlob(img.config);
    for (const l of img.layers) up.addBlob(l.bytes);
    if (item.kind === 'index') up.addManifest(repo, img.manifest, img.mediaType);
  }
  up.addManifest(repo, item.manifest, item.mediaType, tag);
}

/** Prefetches with a mirror built the way the prefetch command builds it (own storage, pool and spool). */
async function prefetch(env: Env, images: string[], options: PrefetchOptions = {}): Promise<PrefetchResult[]> {
  const storage = new FilesystemStorage(env.root);
  await storage.init();
  const spoolDir = await createSpoolDir(join(env.root, '..', `${env.root.split('/').pop() ?? 'x'}-spool`));
  const upstreams = new UpstreamPool();
  const log = createLogger('silent');
  const mirror = new Mirror({ storage, upstreams, log, spoolDir });
  try {
    return await prefetchImages(images, { mirror, resolver: new Resolver(testConfig({ upstreams: env.upstreams })), log }, options);
  } finally {
    await mirror.drain();
    await upstreams.close();
    await rm(spoolDir, { recursive: true, force: true });
  }
}

async function serveOffline(t: Test, env: Env): Promise<TestMirror> {
  await env.up.stop();
  const mirror = await startMirror({ root: env.root, upstreams: env.upstreams, defaultNamespace: NS });
  t.teardown(() => mirror.close());
  return mirror;
}

async function get(mirror: TestMirror, path: string): Promise<{ status: number; body: Buffer; digest: string | null }> {
  const res = await fetch(`${mirror.url}${path}`, { headers: { accept: ACCEPT } });
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()), digest: res.headers.get('docker-content-digest') };
}

async function assertImageServed(t: Test, mirror: TestMirror, repo: string, img: Image): Promise<void> {
  const m = await get(mirror, `/v2/${repo}/manifests/${img.manifestDigest}`);
  t.equal(m.status, 200, `${img.platform.architecture} manifest served`);
  t.ok(m.body.equals(img.manifest), `${img.platform.architecture} manifest bytes unchanged`);
  for (const [digest, bytes] of [[img.configDigest, img.config] as const, ...img.layers.map((l) => [l.digest, l.bytes] as const)]) {
    const b = await get(mirror, `/v2/${repo}/blobs/${digest}`);
    t.equal(b.status, 200, `blob ${digest.slice(0, 19)} served`);
    t.ok(b.body.equals(bytes), `blob ${digest.slice(0, 19)} bytes unchanged`);
  }
}

t.test('prefetch caches every platform of a multi-arch image: all are served with the upstream stopped', async (t) => {
  const env = await setup(t);
  const [result] = await prefetch(env, [`${NS}/org/multi:v1`]);
  t.equal(result?.ok, true, result?.error ?? 'ok');
  t.equal(result?.digest, env.multi.manifestDigest);
  t.same(result?.platforms, ['linux/amd64', 'linux/arm64/v8']);
  t.equal(result?.manifests, 3);
  t.equal(result?.blobs, 5);

  const mirror = await serveOffline(t, env);
  const index = await get(mirror, '/v2/org/multi/manifests/v1');
  t.equal(index.status, 200);
  t.equal(index.digest, env.multi.manifestDigest);
  t.ok(index.body.equals(env.multi.manifest));
  for (const img of env.multi.images) await assertImageServed(t, mirror, 'org/multi', img);
});

t.test('prefetch with --platform caches only that platform: the other is not served with the upstream stopped', async (t) => {
  const env = await setup(t);
  const [result] = await prefetch(env, [`${NS}/org/multi:v1`], { platforms: parsePlatformList('linux/arm64') });
  t.equal(result?.ok, true, result?.error ?? 'ok');
  t.same(result?.platforms, ['linux/arm64/v8']);
  t.equal(result?.manifests, 2);

  const mirror = await serveOffline(t, env);
  t.equal((await get(mirror, '/v2/org/multi/manifests/v1')).status, 200, 'the index is served');
  const [amd64, arm64] = env.multi.images as [Image, Image];
  await assertImageServed(t, mirror, 'org/multi', arm64);
  const missing = await get(mirror, `/v2/org/multi/manifests/${amd64.manifestDigest}`);
  t.not(missing.status, 200, 'linux/amd64 was not fetched');
  t.not((await get(mirror, `/v2/org/multi/blobs/${amd64.layers[0]?.digest ?? ''}`)).status, 200, 'nor its layers');
});

t.test('prefetch fails an image whose index has none of the given platforms', async (t) => {
  const env = await setup(t);
  const [result] = await prefetch(env, [`${NS}/org/multi:v1`], { platforms: parsePlatformList('linux/s390x') });
  t.equal(result?.ok, false);
  t.match(result?.error, /linux\/s390x/);
});

t.test('prefetch reports a failed image and still fetches the next one', async (t) => {
  const env = await setup(t);
  const results = await prefetch(env, [`${NS}/org/absent:1`, `${NS}/org/single:1.0`]);
  t.equal(results[0]?.ok, false);
  t.match(results[0]?.error, /MANIFEST_UNKNOWN|unknown/i);
  t.equal(results[1]?.ok, true, results[1]?.error ?? 'ok');
  const mirror = await serveOffline(t, env);
  await assertImageServed(t, mirror, 'org/single', env.single);
});

t.test("prefetch refuses a layer whose upstream announces more than the manifest's descriptor says, at once", async (t) => {
  const env = await setup(t);
  env.upstreams = [{ namespace: NS, host: env.up.host, readTimeoutMs: 3000 }];
  const layer = env.single.layers[0];
  if (!layer) throw new Error('the fixture image has a layer');
  env.up.setBlobFault(layer.digest, { kind: 'content-length', value: layer.bytes.length * 2 });
  const started = performance.now();
  const [result] = await prefetch(env, [`${NS}/org/single:1.0`]);
  t.equal(result?.ok, false);
  t.match(result?.error, /larger than the mirror accepts/);
  t.ok(performance.now() - started < 2000, `at once (${Math.round(performance.now() - started)} ms), not after the read timeout`);
});

t.test('prefetch of an image already cached downloads no blob again', async (t) => {
  const env = await setup(t);
  await prefetch(env, [`${NS}/org/single:1.0`]);
  env.up.clearRequests();
  const [again] = await prefetch(env, [`${NS}/org/single:1.0`]);
  t.equal(again?.ok, true);
  t.equal(again?.fetchedBlobs, 0);
  t.equal(env.up.countRequests({ method: 'GET', pathIncludes: '/blobs/' }), 0);
});

t.test('prefetch of an image by digest caches it under that digest', async (t) => {
  const env = await setup(t);
  const [result] = await prefetch(env, [`${NS}/org/single@${env.single.manifestDigest}`]);
  t.equal(result?.ok, true, result?.error ?? 'ok');
  const mirror = await serveOffline(t, env);
  await assertImageServed(t, mirror, 'org/single', env.single);
});

t.test('the prefetch command reads --file, prints one line per image and a summary, and exits 1 when one failed', async (t) => {
  const env = await setup(t);
  const dir = await mkdtemp(join(tmpdir(), 'prefetch-cli-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const config = join(dir, 'upstreams.yaml');
  await writeFile(config, `- namespace: ${NS}\n  host: ${env.up.host}\n  tls: false\n`);
  const list = join(dir, 'images.txt');
  await writeFile(list, `# images for the test\n${NS}/org/multi:v1   # multi-arch\n\n${NS}/org/absent:1\n`);
  const r = await runCli([
    '--upstream-config-file',
    config,
    'filesystem',
    '--root',
    env.root,
    'prefetch',
    '--platform',
    'linux/amd64',
    '--file',
    list,
    `${NS}/org/single:1.0`,
  ]);
  t.equal(r.code, 1, r.stderr);
  t.match(r.stdout, new RegExp(`^ok +${NS}/org/single:1\\.0 `, 'm'));
  t.match(r.stdout, new RegExp(`^ok +${NS}/org/multi:v1 .*\\[linux/amd64\\]`, 'm'));
  t.match(r.stdout, new RegExp(`^FAILED +${NS}/org/absent:1: `, 'm'));
  t.match(r.stdout, /^prefetched 2 of 3 images: .*; 1 failed$/m);
});

t.test('the prefetch command exits 0 when every image was cached', async (t) => {
  const env = await setup(t);
  const dir = await mkdtemp(join(tmpdir(), 'prefetch-cli-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const config = join(dir, 'upstreams.yaml');
  await writeFile(config, `- namespace: ${NS}\n  host: ${env.up.host}\n  tls: false\n`);
  const r = await runCli(['--upstream-config-file', config, 'filesystem', '--root', env.root, 'prefetch', `${NS}/org/single:1.0`]);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^prefetched 1 of 1 image: /m);
});

t.test('a server started with --preload prefetches the listed images in the background', async (t) => {
  const env = await setup(t);
  const dir = await mkdtemp(join(tmpdir(), 'preload-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const list = join(dir, 'images.txt');
  await writeFile(list, `${NS}/org/multi:v1\n${NS}/org/single:1.0\n`);
  const proc = await startMirrorProcess({
    root: env.root,
    configYaml: `- namespace: ${NS}\n  host: ${env.up.host}\n  tls: false\n`,
    args: ['--preload', list, '--default-namespace', NS],
  });
  t.teardown(() => proc.stop().then(() => undefined));
  const deadline = Date.now() + 30_000;
  while (!proc.logs().some((l) => l['msg'] === 'preload: done') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const done = proc.logs().find((l) => l['msg'] === 'preload: done');
  t.ok(done, 'preload finished');
  t.equal(done?.['ok'], 2);
  t.equal(proc.logs().filter((l) => l['msg'] === 'preload: image cached').length, 2);
  await proc.stop();

  const mirror = await serveOffline(t, env);
  for (const img of env.multi.images) await assertImageServed(t, mirror, 'org/multi', img);
  await assertImageServed(t, mirror, 'org/single', env.single);
});
