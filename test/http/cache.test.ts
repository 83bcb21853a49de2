import t, { type Test } from 'tap';
import { randomBytesSeeded, sha256 } from '../fixtures/content.js';
import { MEDIA_TYPES, startFixtureUpstream, type FixtureUpstream } from '../fixtures/upstream.js';
import { startMirror, type StartMirrorOptions, type TestMirror, type TestUpstream } from '../helpers/mirror.js';

const OCI = { accept: `${MEDIA_TYPES.ociManifest}, ${MEDIA_TYPES.ociIndex}` };

async function setup(
  t: Test,
  upstream: Partial<TestUpstream> = {},
  options: Partial<StartMirrorOptions> = {},
): Promise<{ up: FixtureUpstream; mirror: TestMirror }> {
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  const mirror = await startMirror({
    upstreams: [{ namespace: 'fixture.test', host: up.host, ...upstream }],
    defaultNamespace: 'fixture.test',
    ...options,
  });
  t.teardown(() => mirror.close());
  return { up, mirror };
}

async function get(mirror: TestMirror, path: string, init: RequestInit = {}): Promise<{ res: Response; body: Buffer }> {
  const res = await fetch(`${mirror.url}${path}`, { headers: OCI, ...init });
  return { res, body: Buffer.from(await res.arrayBuffer()) };
}

/** GET whose body may be cut: resolves with what arrived and whether reading failed. */
async function getMaybeBroken(mirror: TestMirror, path: string): Promise<{ status: number; body: Buffer; failed: boolean }> {
  const res = await fetch(`${mirror.url}${path}`);
  const chunks: Buffer[] = [];
  try {
    for await (const c of res.body as unknown as AsyncIterable<Uint8Array>) chunks.push(Buffer.from(c));
    return { status: res.status, body: Buffer.concat(chunks), failed: false };
  } catch {
    return { status: res.status, body: Buffer.concat(chunks), failed: true };
  }
}

function manifestGets(up: FixtureUpstream, ref: string): number {
  return up.requests.filter((r) => r.method === 'GET' && r.path.endsWith(`/manifests/${ref}`)).length;
}
function manifestHeads(up: FixtureUpstream, ref: string): number {
  return up.requests.filter((r) => r.method === 'HEAD' && r.path.endsWith(`/manifests/${ref}`)).length;
}

t.test('a manifest by tag is served from the cache after the upstream is stopped', async (t) => {
  const { up, mirror } = await setup(t);
  const img = up.addImage('org/app', { tag: 'v1' });
  t.equal((await get(mirror, '/v2/org/app/manifests/v1')).res.status, 200);
  await up.stop();
  const { res, body } = await get(mirror, '/v2/org/app/manifests/v1');
  t.equal(res.status, 200);
  t.same(body, img.bytes);
  t.equal(res.headers.get('docker-content-digest'), img.digest);
  t.equal(res.headers.get('content-type'), MEDIA_TYPES.ociManifest);
  const head = await get(mirror, '/v2/org/app/manifests/v1', { method: 'HEAD', headers: OCI });
  t.equal(head.res.status, 200);
  t.equal(head.res.headers.get('content-length'), String(img.bytes.length));
});

t.test('a manifest by digest is served from the cache after the upstream is stopped', async (t) => {
  const { up, mirror } = await setup(t);
  const img = up.addImage('org/app', { tag: 'v1' });
  t.equal((await get(mirror, `/v2/org/app/manifests/${img.digest}`)).res.status, 200);
  await up.stop();
  const { res, body } = await get(mirror, `/v2/org/app/manifests/${img.digest}`);
  t.equal(res.status, 200);
  t.same(body, img.bytes);
});

t.test('a manifest pulled by tag is also cached by its digest', async (t) => {
  const { up, mirror } = await setup(t);
  const img = up.addImage('org/app', { tag: 'v1' });
  await get(mirror, '/v2/org/app/manifests/v1');
  await up.stop();
  t.equal((await get(mirror, `/v2/org/app/manifests/${img.digest}`)).res.status, 200);
});

t.test('a blob is served from the cache after the upstream is stopped, full and ranged', async (t) => {
  const { up, mirror } = await setup(t);
  const bytes = randomBytesSeeded(200_000, 5);
  const digest = up.addBlob(bytes);
  t.equal((await get(mirror, `/v2/org/app/blobs/${digest}`)).res.status, 200);
  await up.stop();
  const full = await get(mirror, `/v2/org/app/blobs/${digest}`);
  t.equal(full.res.status, 200);
  t.same(full.body, bytes);
  const ranged = await get(mirror, `/v2/org/app/blobs/${digest}`, { headers: { range: 'bytes=100-199' } });
  t.equal(ranged.res.status, 206);
  t.equal(ranged.res.headers.get('content-range'), `bytes 100-199/${bytes.length}`);
  t.same(ranged.body, bytes.subarray(100, 200));
  const suffix = await get(mirror, `/v2/org/app/blobs/${digest}`, { headers: { range: 'bytes=-10' } });
  t.same(suffix.body, bytes.subarray(bytes.length - 10));
  const head = await get(mirror, `/v2/org/app/blobs/${digest}`, { method: 'HEAD' });
  t.equal(head.res.status, 200);
  t.equal(head.res.headers.get('content-length'), String(bytes.length));
});

t.test('a blob whose upstream body does not match its digest is never stored; the next request gets good bytes', async (t) => {
  const { up, mirror } = await setup(t);
  const bytes = randomBytesSeeded(300_000, 8);
  const digest = up.addBlob(bytes);
  up.setBlobFault(digest, { kind: 'wrong-digest', times: 1 });
  const first = await getMaybeBroken(mirror, `/v2/org/app/blobs/${digest}`);
  t.ok(first.failed || sha256(first.body) !== digest, "the first client's transfer fails or does not hash");
  t.not(sha256(first.body), digest);
  t.equal(await mirror.storage.statBlob(digest), undefined, 'nothing stored');
  const second = await get(mirror, `/v2/org/app/blobs/${digest}`);
  t.equal(second.res.status, 200);
  t.equal(sha256(second.body), digest);
  t.equal(up.blobGets(digest), 2);
  await mirror.settled();
  t.ok(await mirror.storage.statBlob(digest), 'the good bytes are stored');
});

t.test('a truncated upstream blob body is never stored', async (t) => {
  const { up, mirror } = await setup(t);
  const bytes = randomBytesSeeded(300_000, 9);
  const digest = up.addBlob(bytes);
  up.setBlobFault(digest, { kind: 'truncate', afterBytes: 100_000, times: 1 });
  const first = await getMaybeBroken(mirror, `/v2/org/app/blobs/${digest}`);
  t.ok(first.failed || first.body.length < bytes.length);
  t.equal(await mirror.storage.statBlob(digest), undefined);
  const second = await get(mirror, `/v2/org/app/blobs/${digest}`);
  t.equal(sha256(second.body), digest);
});

t.test('within manifest_invalidation_time a cached tag is served without contacting the upstream', async (t) => {
  const { up, mirror } = await setup(t);
  up.addImage('org/app', { tag: 'v1' });
  await get(mirror, '/v2/org/app/manifests/v1');
  up.clearRequests();
  await get(mirror, '/v2/org/app/manifests/v1');
  await get(mirror, '/v2/org/app/manifests/v1', { method: 'HEAD', headers: OCI });
  t.equal(up.requests.length, 0);
});

t.test('with manifest_invalidation_time 0, a moved upstream tag serves the new digest', async (t) => {
  const { up, mirror } = await setup(t, { manifestInvalidationMs: 0 });
  const one = up.addImage('org/app', { tag: 'v1', layers: [Buffer.from('one')] });
  t.equal((await get(mirror, '/v2/org/app/manifests/v1')).res.headers.get('docker-content-digest'), one.digest);
  const two = up.addImage('org/app', { tag: 'v1', layers: [Buffer.from('two')] });
  const { res, body } = await get(mirror, '/v2/org/app/manifests/v1');
  t.equal(res.headers.get('docker-content-digest'), two.digest);
  t.same(body, two.bytes);
});

t.test('revalidating an unchanged tag uses HEAD, not a second GET', async (t) => {
  const { up, mirror } = await setup(t, { manifestInvalidationMs: 0 });
  const img = up.addImage('org/app', { tag: 'v1' });
  await get(mirror, '/v2/org/app/manifests/v1');
  t.equal(manifestGets(up, 'v1'), 1);
  for (let i = 0; i < 3; i++) {
    const { res, body } = await get(mirror, '/v2/org/app/manifests/v1');
    t.equal(res.status, 200);
    t.same(body, img.bytes);
  }
  t.equal(manifestGets(up, 'v1'), 1, 'still one GET');
  t.equal(manifestHeads(up, 'v1'), 3, 'one HEAD per revalidation');
});

t.test('a tag is revalidated once manifest_invalidation_time has passed', async (t) => {
  let now = Date.now();
  const { up, mirror } = await setup(t, { manifestInvalidationMs: 3_600_000 }, { now: () => now });
  up.addImage('org/app', { tag: 'v1' });
  await get(mirror, '/v2/org/app/manifests/v1');
  now += 30 * 60_000;
  await get(mirror, '/v2/org/app/manifests/v1');
  t.equal(manifestHeads(up, 'v1'), 0, 'still fresh after 30 minutes');
  now += 31 * 60_000;
  await get(mirror, '/v2/org/app/manifests/v1');
  t.equal(manifestHeads(up, 'v1'), 1, 'revalidated after the hour');
});

t.test('with the upstream down, an expired tag is served from its last known mapping with a Warning', async (t) => {
  const { up, mirror } = await setup(t, { manifestInvalidationMs: 0 });
  const img = up.addImage('org/app', { tag: 'v1' });
  await get(mirror, '/v2/org/app/manifests/v1');
  await up.stop();
  const { res, body } = await get(mirror, '/v2/org/app/manifests/v1');
  t.equal(res.status, 200);
  t.same(body, img.bytes);
  t.ok(res.headers.get('warning'), 'a Warning header marks the stale answer');
});

t.test('with the upstream answering 503 or 429, an expired tag is served stale', async (t) => {
  const { up, mirror } = await setup(t, { manifestInvalidationMs: 0 });
  const img = up.addImage('org/app', { tag: 'v1' });
  await get(mirror, '/v2/org/app/manifests/v1');
  for (const status of [503, 429]) {
    up.setGlobalFault({ kind: 'status', status });
    const { res } = await get(mirror, '/v2/org/app/manifests/v1');
    t.equal(res.status, 200, `upstream ${status}`);
    t.equal(res.headers.get('docker-content-digest'), img.digest);
  }
});

t.test('a tag deleted upstream is 404 after revalidation, not served from the cache', async (t) => {
  const { up, mirror } = await setup(t, { manifestInvalidationMs: 0 });
  up.addImage('org/app', { tag: 'v1' });
  await get(mirror, '/v2/org/app/manifests/v1');
  up.deleteTag('org/app', 'v1');
  const { res } = await get(mirror, '/v2/org/app/manifests/v1');
  t.equal(res.status, 404);
});

t.test('tags/list during an upstream outage lists the tags this cache has seen', async (t) => {
  const { up, mirror } = await setup(t);
  up.addImage('org/app', { tag: 'v2' });
  up.addImage('org/app', { tag: 'v1' });
  await get(mirror, '/v2/org/app/manifests/v1');
  await get(mirror, '/v2/org/app/manifests/v2');
  await up.stop();
  const res = await fetch(`${mirror.url}/v2/org/app/tags/list`);
  t.equal(res.status, 200);
  t.same(((await res.json()) as { tags: string[] }).tags, ['v1', 'v2']);
});
