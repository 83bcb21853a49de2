/**
 * Serve stale: once a tag's mapping has expired, an upstream outage (down, 5xx, 429) must not break pulls
 * of content the cache already has; it is served with a `Warning` header. Content the cache does not have
 * fails quickly with a 5xx and an OCI error body.
 */
import t, { type Test } from 'tap';
import { randomBytesSeeded, sha256 } from '../fixtures/content.js';
import { startFixtureUpstream, type AddedImage, type FixtureUpstream } from '../fixtures/upstream.js';
import { startMirror, type TestMirror, type TestUpstream } from '../helpers/mirror.js';

const OCI_ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json';
const INVALIDATION_MS = 60_000;

interface Setup {
  up: FixtureUpstream;
  m: TestMirror;
  img: AddedImage;
  clock: { ms: number };
  manifestUrl(ref: string): string;
  blobUrl(digest: string): string;
  tagsUrl(): string;
}

/** A fixture with one image, and a mirror whose clock the test moves. */
async function setup(t: Test, overrides: Partial<TestUpstream> = {}): Promise<Setup> {
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  const img = up.addImage('x/app', { tag: 'v1', layers: [randomBytesSeeded(256 * 1024, 11)] });
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
        ...overrides,
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
    manifestUrl: (ref) => `${m.url}/v2/x/app/manifests/${ref}?ns=${up.host}`,
    blobUrl: (digest) => `${m.url}/v2/x/app/blobs/${digest}?ns=${up.host}`,
    tagsUrl: () => `${m.url}/v2/x/app/tags/list?ns=${up.host}`,
  };
}

interface Reply {
  status: number;
  headers: Headers;
  body: Buffer;
  ms: number;
}

async function get(url: string, init: { method?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
  const started = performance.now();
  const res = await fetch(url, {
    method: init.method ?? 'GET',
    headers: { accept: OCI_ACCEPT, ...init.headers },
    signal: AbortSignal.timeout(30_000),
  });
  const body = Buffer.from(await res.arrayBuffer());
  return { status: res.status, headers: res.headers, body, ms: performance.now() - started };
}

function ociCode(r: Reply): string | undefined {
  try {
    const doc = JSON.parse(r.body.toString('utf8')) as { errors?: { code?: string; message?: string }[] };
    const e = doc.errors?.[0];
    return e && typeof e.code === 'string' && typeof e.message === 'string' ? e.code : undefined;
  } catch {
    return undefined;
  }
}

async function warmTag(t: Test, s: Setup): Promise<void> {
  const first = await get(s.manifestUrl('v1'));
  t.equal(first.status, 200, 'first pull by tag: 200');
  t.equal(first.headers.get('docker-content-digest'), s.img.digest);
  t.equal(first.headers.get('warning'), null, 'first pull: no Warning');
}

function assertStale(t: Test, r: Reply, s: Setup, what: string): void {
  t.equal(r.status, 200, `${what}: 200`);
  t.equal(r.headers.get('docker-content-digest'), s.img.digest, `${what}: the last known digest`);
  t.match(r.headers.get('warning') ?? '', /^110 /, `${what}: Warning: 110 "Response is Stale"`);
}

t.test('an expired tag is served stale with a Warning while the upstream is stopped', async (t) => {
  const s = await setup(t);
  await warmTag(t, s);
  await s.up.stop();
  s.clock.ms += INVALIDATION_MS + 1000;
  const r = await get(s.manifestUrl('v1'));
  assertStale(t, r, s, 'GET by tag');
  t.same(r.body, s.img.bytes, 'the exact stored manifest bytes');
  const head = await get(s.manifestUrl('v1'), { method: 'HEAD' });
  assertStale(t, head, s, 'HEAD by tag');
});

t.test('a stale tag is revalidated without a Warning once the upstream is back', async (t) => {
  const s = await setup(t);
  await warmTag(t, s);
  await s.up.stop();
  s.clock.ms += INVALIDATION_MS + 1000;
  assertStale(t, await get(s.manifestUrl('v1')), s, 'during the outage');
  await s.up.start();
  const r = await get(s.manifestUrl('v1'));
  t.equal(r.status, 200);
  t.equal(r.headers.get('warning'), null, 'after the outage: no Warning');
  t.equal(r.headers.get('docker-content-digest'), s.img.digest);
});

t.test('an expired tag is served stale with a Warning while the upstream answers 503', async (t) => {
  const s = await setup(t);
  await warmTag(t, s);
  s.up.setGlobalFault({ kind: 'status', status: 503 });
  s.clock.ms += INVALIDATION_MS + 1000;
  assertStale(t, await get(s.manifestUrl('v1')), s, 'GET by tag during 503s');
  t.ok(s.up.countRequests({ pathIncludes: '/manifests/v1' }) >= 2, 'the mirror did ask upstream again');
});

t.test('an expired tag is served stale with a Warning while the upstream answers 429', async (t) => {
  const s = await setup(t);
  await warmTag(t, s);
  s.up.setGlobalFault({ kind: 'status', status: 429, headers: { 'Retry-After': '30' } });
  s.clock.ms += INVALIDATION_MS + 1000;
  assertStale(t, await get(s.manifestUrl('v1')), s, 'GET by tag during 429s');
});

t.test('an expired tag is served stale while the upstream stalls past readTimeoutMs', async (t) => {
  const s = await setup(t, { readTimeoutMs: 500 });
  await warmTag(t, s);
  s.up.setGlobalFault({ kind: 'stall', ms: 30_000 });
  s.clock.ms += INVALIDATION_MS + 1000;
  const r = await get(s.manifestUrl('v1'));
  assertStale(t, r, s, 'GET by tag during a stall');
  t.ok(r.ms < 10_000, `answered in ${Math.round(r.ms)} ms`);
});

t.test('with serveStale false, an expired tag fails with 503 while the upstream is stopped', async (t) => {
  const s = await setup(t, { serveStale: false });
  await warmTag(t, s);
  await s.up.stop();
  s.clock.ms += INVALIDATION_MS + 1000;
  const r = await get(s.manifestUrl('v1'));
  t.equal(r.status, 503);
  t.equal(ociCode(r), 'UPSTREAM_UNAVAILABLE');
  t.equal(r.headers.get('warning'), null);
});

t.test('a tag within its invalidation time is served from cache while the upstream is stopped, without a Warning', async (t) => {
  const s = await setup(t);
  await warmTag(t, s);
  await s.up.stop();
  s.clock.ms += INVALIDATION_MS / 2;
  const r = await get(s.manifestUrl('v1'));
  t.equal(r.status, 200);
  t.equal(r.headers.get('warning'), null);
  t.equal(r.headers.get('docker-content-digest'), s.img.digest);
});

t.test('an expired cached blob is served stale with a Warning while the upstream is stopped', async (t) => {
  const s = await setup(t);
  const layer = s.img.layerDigests[0] as string;
  const first = await get(s.blobUrl(layer));
  t.equal(first.status, 200);
  t.equal(sha256(first.body), layer);
  await s.m.settled();
  await s.up.stop();
  s.clock.ms += INVALIDATION_MS + 1000;
  const r = await get(s.blobUrl(layer));
  t.equal(r.status, 200, 'stale blob: 200');
  t.equal(sha256(r.body), layer, 'stale blob: right bytes');
  t.match(r.headers.get('warning') ?? '', /^110 /, 'stale blob: Warning');
});

t.test('the tag list is served from the cached tags with a Warning while the upstream is stopped', async (t) => {
  const s = await setup(t);
  await warmTag(t, s);
  await s.up.stop();
  const r = await get(s.tagsUrl());
  t.equal(r.status, 200);
  t.same((JSON.parse(r.body.toString('utf8')) as { tags: string[] }).tags, ['v1']);
  t.match(r.headers.get('warning') ?? '', /^110 /);
});

t.test('uncached content during an outage: a quick 5xx with an OCI error body (upstream stopped)', async (t) => {
  const s = await setup(t, { connectTimeoutMs: 2000 });
  await s.up.stop();
  const layer = s.img.layerDigests[0] as string;
  for (const [what, url, method] of [
    ['manifest by tag', s.manifestUrl('v1'), 'GET'],
    ['manifest by digest', s.manifestUrl(s.img.digest), 'GET'],
    ['HEAD manifest', s.manifestUrl('v1'), 'HEAD'],
    ['blob', s.blobUrl(layer), 'GET'],
    ['HEAD blob', s.blobUrl(layer), 'HEAD'],
    ['tags list', s.tagsUrl(), 'GET'],
  ] as const) {
    const r = await get(url, { method });
    t.ok(r.status === 502 || r.status === 503 || r.status === 504, `${what}: 502/503/504 (got ${r.status})`);
    if (method === 'GET') t.match(ociCode(r) ?? '', /^UPSTREAM_/, `${what}: OCI error body (${ociCode(r)})`);
    t.match(r.headers.get('content-type') ?? '', /application\/json/, `${what}: JSON`);
    t.ok(r.ms < 2000 + 1000, `${what}: answered in ${Math.round(r.ms)} ms, within connectTimeoutMs`);
  }
});

t.test('uncached content during an outage: a quick 504 with an OCI error body (upstream accepts but never answers)', async (t) => {
  const s = await setup(t, { readTimeoutMs: 1000 });
  s.up.setGlobalFault({ kind: 'stall', ms: 60_000 });
  const r = await get(s.manifestUrl('v1'));
  t.equal(r.status, 504);
  t.equal(ociCode(r), 'UPSTREAM_TIMEOUT');
  t.ok(r.ms < 10_000, `answered in ${Math.round(r.ms)} ms`);
});
