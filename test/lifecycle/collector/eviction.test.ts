/**
 * Size-bounded eviction (issue "Cache lifecycle"): the mirror in this process, filled through the
 * fixture upstream past --max-cache-size, then the collector run directly (server.collector.run()).
 * Four images of one 3 MiB layer each (12 MiB and a little) against a 10 MiB limit with the low-water
 * mark at 90% (9 MiB): evicting the two least recently used images brings the cache under it.
 * Filesystem and S3 (s3rver, test/helpers/s3-server.ts), one behaviour per test.
 */
import t, { type Test } from 'tap';
import type { ResolvedRepository } from '../../../src/resolve/resolver.js';
import { createS3Storage } from '../../../src/storage/s3/index.js';
import type { Storage } from '../../../src/storage/storage.js';
import { randomBytesSeeded, sha256 } from '../../fixtures/content.js';
import { MEDIA_TYPES, startFixtureUpstream, type AddedImage, type FixtureUpstream } from '../../fixtures/upstream.js';
import { startMirror, testConfig, type TestMirror } from '../../helpers/mirror.js';
import { startS3Server } from '../../helpers/s3-server.js';

const MiB = 1024 * 1024;
const LIMIT = 10 * MiB;
const TARGET = Math.floor(LIMIT * 0.9);
const REPO = 'library/app';
const ACCEPT = `${MEDIA_TYPES.ociManifest}, ${MEDIA_TYPES.ociIndex}`;
const TAGS = ['a', 'b', 'c', 'd'] as const;

const s3 = await startS3Server({ bucket: 'eviction' });
t.teardown(() => s3.close());
let prefixes = 0;

type Kind = 'filesystem' | 's3';

interface Setup {
  up: FixtureUpstream;
  m: TestMirror;
  images: Record<(typeof TAGS)[number], AddedImage>;
}

function s3Storage(prefix = `evict-${process.pid}-${++prefixes}`): Storage {
  return createS3Storage({
    bucket: s3.bucket,
    endpoint: s3.endpoint,
    accessKeyId: s3.accessKeyId,
    secretAccessKey: s3.secretAccessKey,
    prefix,
    partSizeBytes: 5 * MiB,
    requestTimeoutMs: 10_000,
  });
}

async function startUpstream(t: Test): Promise<{ up: FixtureUpstream; images: Setup['images'] }> {
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  const images = {} as Setup['images'];
  TAGS.forEach((tag, i) => {
    images[tag] = up.addImage(REPO, { tag, layers: [randomBytesSeeded(3 * MiB, 100 + i)] });
  });
  return { up, images };
}

async function mirrorOn(
  t: Test,
  up: FixtureUpstream,
  storage: Storage | undefined,
  extra: { graceMs?: number; replicaId?: string } = {},
): Promise<TestMirror> {
  const m = await startMirror({
    upstreams: [{ namespace: up.host, host: up.host }],
    ...(storage ? { storage } : {}),
    replicaId: extra.replicaId ?? 'test-replica',
    lifecycle: { maxCacheSize: { kind: 'bytes', bytes: LIMIT }, lowWaterPercent: 90, graceMs: extra.graceMs ?? 0, gcIntervalMs: 0 },
  });
  t.teardown(() => m.close());
  return m;
}

/** An upstream with four images and a mirror that pulled a, b, c, d in that order, then a again. */
async function filled(t: Test, kind: Kind, extra: { graceMs?: number } = {}): Promise<Setup> {
  const { up, images } = await startUpstream(t);
  const m = await mirrorOn(t, up, kind === 's3' ? s3Storage() : undefined, extra);
  for (const tag of TAGS) {
    await pull(t, m, up, images[tag], tag);
    await sleep(25);
  }
  await pull(t, m, up, images.a, 'a');
  await sleep(25);
  return { up, m, images };
}

async function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: Buffer }> {
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(30_000) });
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
}

async function pull(t: Test, m: TestMirror, up: FixtureUpstream, image: AddedImage, tag: string): Promise<void> {
  const manifest = await get(`${m.url}/v2/${REPO}/manifests/${tag}?ns=${up.host}`, { accept: ACCEPT });
  t.equal(manifest.status, 200, `manifest ${tag}`);
  for (const digest of [image.configDigest, ...image.layerDigests]) {
    const blob = await get(`${m.url}/v2/${REPO}/blobs/${digest}?ns=${up.host}`);
    t.equal(blob.status, 200, `blob ${digest.slice(7, 19)} of ${tag}`);
    t.equal(sha256(blob.body), digest, `blob ${digest.slice(7, 19)} of ${tag}: right bytes`);
  }
  // Stored: a backend may finish its upload after the client got the last byte.
  await m.server.mirror.drain();
}

async function cachedBytes(storage: Storage): Promise<number> {
  let total = 0;
  for await (const b of storage.listBlobs()) total += b.size;
  return total;
}

async function isCached(storage: Storage, digest: string): Promise<boolean> {
  return (await storage.statBlob(digest)) !== undefined;
}

function layer(image: AddedImage): string {
  return image.layerDigests[0] as string;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

for (const kind of ['filesystem', 's3'] as const) {
  t.test(`${kind}: over the limit, the collector evicts down to the low-water mark`, async (t) => {
    const { m } = await filled(t, kind);
    const before = await cachedBytes(m.storage);
    t.ok(before > LIMIT, `filled past the limit (${before} > ${LIMIT})`);
    const report = await m.server.collector.run();
    const after = await cachedBytes(m.storage);
    t.ok(after <= TARGET, `under the low-water mark (${after} <= ${TARGET})`);
    t.equal(report.finalBytes, after, 'the report matches what is stored');
    t.equal(report.eviction?.evicted, 4, 'two images: config and layer each');
  });

  t.test(`${kind}: the least recently used images are evicted and the most recently used survive`, async (t) => {
    const { m, images } = await filled(t, kind);
    await m.server.collector.run();
    t.ok(await isCached(m.storage, layer(images.a)), 'a (pulled first, used again last) survives');
    t.ok(await isCached(m.storage, layer(images.d)), 'd (pulled last) survives');
    t.notOk(await isCached(m.storage, layer(images.b)), 'b (least recently used) is evicted');
    t.notOk(await isCached(m.storage, layer(images.c)), 'c is evicted');
  });

  t.test(`${kind}: an evicted image is pulled again transparently: manifest from the cache, blobs re-fetched`, async (t) => {
    const { up, m, images } = await filled(t, kind);
    await m.server.collector.run();
    const b = images.b;
    t.equal(up.blobGets(layer(b)), 1, 'fetched once before eviction');
    const manifestGets = up.countRequests({ method: 'GET', pathIncludes: '/manifests/' });
    await pull(t, m, up, b, 'b');
    t.equal(up.blobGets(layer(b)), 2, 'the evicted layer was fetched from upstream again');
    t.equal(up.countRequests({ method: 'GET', pathIncludes: '/manifests/' }), manifestGets, 'the manifest still came from the cache');
    t.ok(await isCached(m.storage, layer(b)), 'and is cached again');
  });

  t.test(`${kind}: a blob being read is not evicted, and can be once its reader closed`, async (t) => {
    const { up, m, images } = await filled(t, kind);
    const upstream = testConfig({ upstreams: [{ namespace: up.host, host: up.host }] }).upstreams.get(up.host);
    const repo: ResolvedRepository = { namespace: up.host, repository: REPO, upstream: upstream!, source: 'ns' };
    const target = layer(images.b);
    const handle = await m.server.mirror.blobs.open(repo, target);
    const stream = await handle.open();
    t.ok(m.server.mirror.inUse(target), 'in use while its stream is open');
    await m.server.collector.run();
    t.ok(await isCached(m.storage, target), 'the blob being read survived');
    t.ok((await cachedBytes(m.storage)) <= TARGET, 'others were evicted instead');
    t.notOk(await isCached(m.storage, layer(images.c)), 'c was evicted');
    t.notOk(await isCached(m.storage, layer(images.d)), 'and d (c alone was not enough)');

    stream.destroy();
    await new Promise((r) => stream.once('close', r).once('error', r));
    t.notOk(m.server.mirror.inUse(target), 'no longer in use once the stream closed');
    // Over the limit again with b and a fresh pull of c.
    await pull(t, m, up, images.c, 'c');
    await pull(t, m, up, images.d, 'd');
    await sleep(25);
    await m.server.collector.run();
    t.notOk(await isCached(m.storage, target), 'b can be evicted again');
  });
}

t.test('filesystem: blobs used within the grace window are not evicted, even over the limit', async (t) => {
  const { m } = await filled(t, 'filesystem', { graceMs: 10 * 60_000 });
  const before = await cachedBytes(m.storage);
  const report = await m.server.collector.run();
  t.equal(report.eviction?.evicted, 0, 'nothing evicted');
  t.equal(report.eviction?.reachedTarget, false, 'the report says the target was not reached');
  t.equal(await cachedBytes(m.storage), before, 'everything is still cached');
});

t.test('filesystem: under the limit, nothing is evicted', async (t) => {
  const { up, images } = await startUpstream(t);
  const m = await mirrorOn(t, up, undefined);
  await pull(t, m, up, images.a, 'a');
  await pull(t, m, up, images.b, 'b');
  const before = await cachedBytes(m.storage);
  const report = await m.server.collector.run();
  t.equal(report.eviction?.evicted, 0);
  t.equal(await cachedBytes(m.storage), before);
});

t.test('s3: a blob another replica sharing the bucket used recently is kept; the least recently used elsewhere goes', async (t) => {
  const { up, images } = await startUpstream(t);
  const prefix = `evict-${process.pid}-${++prefixes}`;
  const one = await mirrorOn(t, up, s3Storage(prefix), { replicaId: 'replica-one' });
  const two = await mirrorOn(t, up, s3Storage(prefix), { replicaId: 'replica-two' });
  for (const tag of TAGS) {
    await pull(t, one, up, images[tag], tag);
    await sleep(25);
  }
  // Replica two serves b from the shared cache and flushes its access times (as it does every minute).
  await pull(t, two, up, images.b, 'b');
  t.equal(up.blobGets(layer(images.b)), 1, 'replica two served b from the shared cache');
  t.ok(await two.server.tracker.flush(), 'replica two wrote its access object');
  await sleep(25);
  await one.server.collector.run();
  t.ok(await isCached(one.storage, layer(images.b)), 'b, used by the other replica, survives');
  t.notOk(await isCached(one.storage, layer(images.a)), 'a, the least recently used anywhere, is evicted');
  t.ok((await cachedBytes(one.storage)) <= TARGET, 'under the low-water mark');
  t.same(await one.storage.listState('access/'), ['access/replica-one', 'access/replica-two'], 'each replica writes its own access object');
});
