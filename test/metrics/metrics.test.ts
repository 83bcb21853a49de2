/**
 * Prometheus metrics, read the way Prometheus reads them: GET /metrics, text format.
 */
import t, { type Test } from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytesSeeded } from '../fixtures/content.js';
import { startFixtureUpstream, type AddedImage, type FixtureUpstream } from '../fixtures/upstream.js';
import { startMirror, type StartMirrorOptions, type TestMirror } from '../helpers/mirror.js';
import { startMirrorProcess } from '../helpers/mirror-process.js';
import { MirrorMetrics } from '../../src/metrics/mirror-metrics.js';

const OCI_ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json';
const INVALIDATION_MS = 60_000;

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the Prometheus text exposition format (enough of it for these tests). */
function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`unparsable metrics line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1] as string] = l[2] as string;
    samples.push({ name: m[1] as string, labels, value: Number(m[3]) });
  }
  return samples;
}

class Scrape {
  constructor(readonly samples: Sample[]) {}
  /** Sum of the series of `name` whose labels include `labels`. */
  value(name: string, labels: Record<string, string> = {}): number {
    return this.samples
      .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
      .reduce((sum, s) => sum + s.value, 0);
  }
  has(name: string): boolean {
    return this.samples.some((s) => s.name === name);
  }
}

async function scrape(url: string): Promise<Scrape> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  if (res.status !== 200) throw new Error(`GET ${url}: ${res.status}`);
  return new Scrape(parseMetrics(await res.text()));
}

interface Setup {
  up: FixtureUpstream;
  m: TestMirror;
  img: AddedImage;
  clock: { ms: number };
  ns: string;
  manifestUrl(ref: string): string;
  blobUrl(digest: string): string;
  metrics(): Promise<Scrape>;
}

async function setup(t: Test): Promise<Setup> {
  sent = 0;
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  const img = up.addImage('x/app', { tag: 'v1', layers: [randomBytesSeeded(64 * 1024, 3)] });
  const clock = { ms: Date.now() };
  const m = await startMirror({
    upstreams: [
      {
        namespace: up.host,
        host: up.host,
        manifestInvalidationMs: INVALIDATION_MS,
        blobInvalidationMs: INVALIDATION_MS,
        connectTimeoutMs: 2000,
        readTimeoutMs: 2000,
      },
    ],
    now: () => clock.ms,
  });
  t.teardown(() => m.close());
  return {
    up,
    m,
    img,
    clock,
    ns: up.host,
    manifestUrl: (ref) => `${m.url}/v2/x/app/manifests/${ref}?ns=${up.host}`,
    blobUrl: (digest) => `${m.url}/v2/x/app/blobs/${digest}?ns=${up.host}`,
    metrics: () => settledScrape(`${m.url}/metrics`),
  };
}

/** Requests sent with get() to the current setup's mirror. */
let sent = 0;

/**
 * Metrics are counted when a response finishes on the server, which can be a moment after the client
 * has read the last byte: scrape until every request sent with get() is counted.
 */
async function settledScrape(url: string): Promise<Scrape> {
  for (let i = 0; ; i++) {
    const m = await scrape(url);
    const counted = m.samples
      .filter((x) => x.name === 'oci_registry_requests_total' && x.labels['route'] !== 'metrics')
      .reduce((sum, x) => sum + x.value, 0);
    if (counted >= sent || i >= 100) return m;
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function get(url: string): Promise<{ status: number; body: Buffer; headers: Headers }> {
  sent++;
  const res = await fetch(url, { headers: { accept: OCI_ACCEPT }, signal: AbortSignal.timeout(30_000) });
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()), headers: res.headers };
}

t.test('GET /metrics answers the Prometheus text format with the Node process metrics', async (t) => {
  const s = await setup(t);
  const res = await fetch(`${s.m.url}/metrics`);
  t.equal(res.status, 200);
  t.match(res.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  const parsed = new Scrape(parseMetrics(text));
  t.ok(parsed.has('process_cpu_user_seconds_total'), 'default process metrics');
  t.ok(parsed.has('nodejs_heap_size_used_bytes'), 'default Node metrics');
  t.match(text, /# TYPE oci_registry_requests_total counter/);
  t.match(text, /# TYPE oci_registry_blob_downloads_in_flight gauge/);
});

t.test('a cache miss counts a miss, upstream bytes and a stored download', async (t) => {
  const s = await setup(t);
  const layer = s.img.layerDigests[0] as string;
  const r = await get(s.blobUrl(layer));
  t.equal(r.status, 200);
  await s.m.settled();
  const m = await s.metrics();
  t.equal(m.value('oci_registry_cache_requests_total', { namespace: s.ns, kind: 'blob', outcome: 'miss' }), 1);
  t.equal(m.value('oci_registry_cache_requests_total', { kind: 'blob', outcome: 'hit' }), 0);
  t.equal(m.value('oci_registry_bytes_served_total', { namespace: s.ns, source: 'upstream' }), r.body.length);
  t.equal(m.value('oci_registry_bytes_served_total', { source: 'cache' }), 0);
  t.equal(m.value('oci_registry_blob_downloads_total', { namespace: s.ns, result: 'stored' }), 1);
  t.equal(m.value('oci_registry_blob_downloads_in_flight'), 0, 'the gauge is back to 0');
  t.equal(m.value('oci_registry_requests_total', { route: 'blobs', method: 'GET', status: '200' }), 1);
  t.equal(m.value('oci_registry_request_duration_seconds_count', { route: 'blobs' }), 1);
});

t.test('a cache hit counts a hit and bytes from the cache, without an upstream request', async (t) => {
  const s = await setup(t);
  const layer = s.img.layerDigests[0] as string;
  await get(s.blobUrl(layer));
  await s.m.settled();
  const before = await s.metrics();
  const r = await get(s.blobUrl(layer));
  t.equal(r.status, 200);
  const m = await s.metrics();
  t.equal(m.value('oci_registry_cache_requests_total', { namespace: s.ns, kind: 'blob', outcome: 'hit' }), 1);
  t.equal(m.value('oci_registry_bytes_served_total', { namespace: s.ns, source: 'cache' }), r.body.length);
  t.equal(
    m.value('oci_registry_upstream_requests_total', { namespace: s.ns }),
    before.value('oci_registry_upstream_requests_total', { namespace: s.ns }),
    'no upstream request',
  );
  t.equal(m.value('oci_registry_blob_downloads_total'), 1, 'no second download');
});

t.test('a manifest miss then hit are counted per kind', async (t) => {
  const s = await setup(t);
  const first = await get(s.manifestUrl('v1'));
  await get(s.manifestUrl('v1'));
  const m = await s.metrics();
  t.equal(m.value('oci_registry_cache_requests_total', { namespace: s.ns, kind: 'manifest', outcome: 'miss' }), 1);
  t.equal(m.value('oci_registry_cache_requests_total', { namespace: s.ns, kind: 'manifest', outcome: 'hit' }), 1);
  t.equal(m.value('oci_registry_bytes_served_total', { namespace: s.ns, source: 'upstream' }), first.body.length);
  t.equal(m.value('oci_registry_bytes_served_total', { namespace: s.ns, source: 'cache' }), first.body.length);
});

t.test('a stale serve (expired tag, upstream down) counts a stale outcome and cache bytes', async (t) => {
  const s = await setup(t);
  const warm = await get(s.manifestUrl('v1'));
  t.equal(warm.status, 200);
  s.clock.ms += INVALIDATION_MS + 1000;
  await s.up.stop();
  const r = await get(s.manifestUrl('v1'));
  t.equal(r.status, 200);
  t.ok(r.headers.get('warning'), 'served stale with a Warning');
  const m = await s.metrics();
  t.equal(m.value('oci_registry_cache_requests_total', { namespace: s.ns, kind: 'manifest', outcome: 'stale' }), 1);
  t.equal(m.value('oci_registry_bytes_served_total', { namespace: s.ns, source: 'cache' }), r.body.length);
  t.ok(
    m.value('oci_registry_upstream_errors_total', { namespace: s.ns, kind: 'manifest', code: 'UPSTREAM_UNAVAILABLE' }) >= 1,
    'the failed revalidation is an upstream error',
  );
});

t.test('upstream exchanges are counted by namespace, kind and status, with their duration', async (t) => {
  const s = await setup(t);
  await get(s.manifestUrl('v1'));
  await get(s.blobUrl(s.img.layerDigests[0] as string));
  const missing = await get(s.manifestUrl('nope'));
  t.equal(missing.status, 404);
  const m = await s.metrics();
  t.ok(m.value('oci_registry_upstream_requests_total', { namespace: s.ns, kind: 'manifest', status: '200' }) >= 1);
  t.ok(m.value('oci_registry_upstream_requests_total', { namespace: s.ns, kind: 'manifest', status: '404' }) >= 1);
  t.equal(m.value('oci_registry_upstream_requests_total', { namespace: s.ns, kind: 'blob', status: '200' }), 1);
  t.equal(
    m.value('oci_registry_upstream_request_duration_seconds_count', { namespace: s.ns }),
    m.value('oci_registry_upstream_requests_total', { namespace: s.ns }),
    'one duration per upstream response',
  );
  t.ok(m.value('oci_registry_upstream_request_duration_seconds_sum', { namespace: s.ns }) > 0);
  t.equal(m.value('oci_registry_upstream_errors_total'), 0, 'no transport errors');
});

t.test('a request joining a running download counts as coalesced', async (t) => {
  const s = await setup(t);
  const layer = s.img.layerDigests[0] as string;
  s.up.setBlobFault(layer, { kind: 'slow', chunkSize: 8 * 1024, delayMs: 100 });
  const first = fetch(s.blobUrl(layer));
  // Wait until the download runs, then join it.
  for (let i = 0; i < 100 && s.up.blobGets(layer) === 0; i++) await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => setTimeout(r, 50));
  const inFlight = await s.metrics();
  t.equal(inFlight.value('oci_registry_blob_downloads_in_flight'), 1, 'one download in flight');
  const [a, b] = await Promise.all([first.then((r) => r.arrayBuffer()), get(s.blobUrl(layer))]);
  t.equal(b.body.length, a.byteLength);
  await s.m.settled();
  const m = await s.metrics();
  t.equal(m.value('oci_registry_coalesced_requests_total', { namespace: s.ns }), 1);
  t.equal(m.value('oci_registry_cache_requests_total', { namespace: s.ns, kind: 'blob', outcome: 'coalesced' }), 1);
  t.equal(m.value('oci_registry_blob_downloads_in_flight'), 0);
  t.equal(s.up.blobGets(layer), 1);
});

t.test('storage errors and dropped corrupt blobs are counted', async (t) => {
  const metrics = new MirrorMetrics();
  metrics.storageError('write_blob');
  metrics.storageError('write_blob');
  metrics.corruptBlobDropped();
  const m = new Scrape(parseMetrics(await metrics.registry.metrics()));
  t.equal(m.value('oci_registry_storage_errors_total', { operation: 'write_blob' }), 2);
  t.equal(m.value('oci_registry_corrupt_blobs_dropped_total'), 1);
});

/** A mirror whose collector runs only when the test calls it, with the fixture upstream's one-layer image. */
async function collectingMirror(
  t: Test,
  lifecycle: StartMirrorOptions['lifecycle'],
): Promise<{ m: TestMirror; layerUrl: string; layerBytes: number }> {
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  const layer = randomBytesSeeded(64 * 1024, 7);
  const img = up.addImage('x/app', { tag: 'v1', layers: [layer] });
  const m = await startMirror({ upstreams: [{ namespace: up.host, host: up.host }], lifecycle: { gcIntervalMs: 0, ...lifecycle } });
  t.teardown(() => m.close());
  return { m, layerUrl: `${m.url}/v2/x/app/blobs/${img.layerDigests[0]}?ns=${up.host}`, layerBytes: layer.length };
}

t.test('the cache size gauges have no sample before a collection run has measured the cache', async (t) => {
  const { m } = await collectingMirror(t, { maxCacheSize: { kind: 'bytes', bytes: 10 * 1024 * 1024 } });
  const text = await (await fetch(`${m.url}/metrics`)).text();
  t.match(text, /# TYPE oci_registry_cache_size_bytes gauge/, 'declared');
  t.match(text, /# TYPE oci_registry_cache_size_limit_bytes gauge/, 'declared');
  const parsed = new Scrape(parseMetrics(text));
  t.notOk(parsed.has('oci_registry_cache_size_bytes'), 'no size sample (0 would read as an empty cache)');
  t.notOk(parsed.has('oci_registry_cache_size_limit_bytes'), 'no limit sample');
});

t.test('a collection run sets the cache size and the --max-cache-size limit in bytes', async (t) => {
  const limit = 10 * 1024 * 1024;
  const { m, layerUrl, layerBytes } = await collectingMirror(t, { maxCacheSize: { kind: 'bytes', bytes: limit } });
  const r = await fetch(layerUrl);
  t.equal(r.status, 200);
  await r.arrayBuffer();
  await m.settled();
  const report = await m.server.collector.run();
  t.equal(report.finalBytes, layerBytes, 'the stored layer is the whole cache');
  const s = await scrape(`${m.url}/metrics`);
  t.equal(s.value('oci_registry_cache_size_bytes'), layerBytes);
  t.equal(s.value('oci_registry_cache_size_limit_bytes'), limit);
});

t.test('without --max-cache-size a collection run sets the cache size and no limit', async (t) => {
  const { m, layerUrl, layerBytes } = await collectingMirror(t, { expiryMs: 24 * 60 * 60_000 });
  await fetch(layerUrl).then((r) => r.arrayBuffer());
  await m.settled();
  await m.server.collector.run();
  const s = await scrape(`${m.url}/metrics`);
  t.equal(s.value('oci_registry_cache_size_bytes'), layerBytes);
  t.notOk(s.has('oci_registry_cache_size_limit_bytes'), 'no limit sample');
});

t.test('namespace labels are capped: beyond the limit, namespaces count as "other"', async (t) => {
  const metrics = new MirrorMetrics();
  for (let i = 0; i < 150; i++) metrics.onResponse(`ns${i}.example`, 'manifest', 200, 0.01, `ns${i}.example`);
  const m = new Scrape(parseMetrics(await metrics.registry.metrics()));
  const namespaces = new Set(m.samples.filter((s) => s.name === 'oci_registry_upstream_requests_total').map((s) => s.labels['namespace']));
  t.equal(namespaces.size, 101);
  t.equal(m.value('oci_registry_upstream_requests_total', { namespace: 'other' }), 50);
});

t.test('--metrics-listen serves /metrics on its own address, and not on the main one', async (t) => {
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  const img = up.addImage('x/app', { tag: 'v1' });
  const root = await mkdtemp(join(tmpdir(), 'oci-metrics-test-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const mirror = await startMirrorProcess({
    root,
    configYaml: `- namespace: ${up.host}\n  host: ${up.host}\n  tls: false\n`,
    args: ['--metrics-listen', '127.0.0.1:0'],
  });
  t.teardown(() => mirror.kill());
  const line = mirror.logs().find((l) => l['msg'] === 'listening');
  const metricsUrl = String(line?.['metricsUrl']);
  t.match(metricsUrl, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
  t.not(new URL(metricsUrl).port, String(mirror.port), 'another port');

  const r = await get(`${mirror.url}/v2/x/app/blobs/${img.configDigest}?ns=${up.host}`);
  t.equal(r.status, 200);
  const m = await scrape(metricsUrl);
  t.equal(m.value('oci_registry_cache_requests_total', { namespace: up.host, kind: 'blob', outcome: 'miss' }), 1);
  t.equal((await fetch(`${mirror.url}/metrics`)).status, 404, 'not on the main listener');
  t.equal((await fetch(metricsUrl.replace('/metrics', '/v2/'))).status, 404, 'the metrics listener serves nothing else');
  t.same(await mirror.stop(), { code: 0, signal: null }, 'SIGTERM closes both listeners and exits 0');
});
