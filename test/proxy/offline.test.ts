/**
 * `--offline` (MirrorOptions.offline): never contact an upstream. Manifests, tags and blobs come from
 * the cache only, whatever their age; anything uncached is MANIFEST_UNKNOWN / BLOB_UNKNOWN (404); the
 * tag list is the cached tags. A cache is filled by an online mirror, then served by an offline one.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { randomBytesSeeded, sha256 } from '../fixtures/content.js';
import { MEDIA_TYPES, startFixtureUpstream, type AddedImage, type FixtureUpstream } from '../fixtures/upstream.js';
import { startMirror, type StartMirrorOptions, type TestMirror } from '../helpers/mirror.js';

const REPO = 'library/app';
const ACCEPT = `${MEDIA_TYPES.ociManifest}, ${MEDIA_TYPES.ociIndex}`;

interface Setup {
  up: FixtureUpstream;
  cached: AddedImage;
  uncached: AddedImage;
  offline: TestMirror;
}

/** Pulls image v1 through an online mirror, then starts an offline mirror on the same cache. */
async function setup(t: Test, upstreamSettings: { manifestInvalidationMs?: number; blobInvalidationMs?: number } = {}): Promise<Setup> {
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  const cached = up.addImage(REPO, { tag: 'v1', layers: [randomBytesSeeded(50_000, 1)] });
  up.setTag(REPO, 'also-v1', cached.digest);
  const uncached = up.addImage(REPO, { tag: 'v2', layers: [randomBytesSeeded(50_000, 2)] });
  const root = await mkdtemp(join(tmpdir(), 'offline-test-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const options: StartMirrorOptions = { upstreams: [{ namespace: up.host, host: up.host, ...upstreamSettings }], root };
  const online = await startMirror(options);
  t.equal((await get(online, up, `manifests/v1`, ACCEPT)).status, 200, 'filled: manifest v1');
  t.equal((await get(online, up, `manifests/also-v1`, ACCEPT)).status, 200, 'filled: tag also-v1');
  for (const d of [cached.configDigest, ...cached.layerDigests]) t.equal((await get(online, up, `blobs/${d}`)).status, 200, 'filled: blob');
  await online.close();
  const offline = await startMirror({ ...options, offline: true });
  t.teardown(() => offline.close());
  up.clearRequests();
  return { up, cached, uncached, offline };
}

async function get(
  m: TestMirror,
  up: FixtureUpstream,
  path: string,
  accept?: string,
  method = 'GET',
): Promise<{ status: number; body: Buffer; code: string | undefined }> {
  const res = await fetch(`${m.url}/v2/${REPO}/${path}${path.includes('?') ? '&' : '?'}ns=${up.host}`, {
    method,
    headers: accept ? { accept } : {},
  });
  const body = Buffer.from(await res.arrayBuffer());
  let code: string | undefined;
  if (res.status >= 400 && body.length > 0) code = (JSON.parse(body.toString()) as { errors: Array<{ code: string }> }).errors[0]?.code;
  return { status: res.status, body, code };
}

function upstreamRequests(up: FixtureUpstream): number {
  return up.countRequests({});
}

t.test('a cached image is served by tag and by digest without contacting upstream', async (t) => {
  const { up, cached, offline } = await setup(t);
  const byTag = await get(offline, up, 'manifests/v1', ACCEPT);
  t.equal(byTag.status, 200, 'by tag');
  t.equal(sha256(byTag.body), cached.digest, 'the cached manifest');
  t.equal((await get(offline, up, `manifests/${cached.digest}`, ACCEPT)).status, 200, 'by digest');
  for (const d of [cached.configDigest, ...cached.layerDigests]) {
    const blob = await get(offline, up, `blobs/${d}`);
    t.equal(blob.status, 200, `blob ${d.slice(7, 19)}`);
    t.equal(sha256(blob.body), d, 'right bytes');
    t.equal((await get(offline, up, `blobs/${d}`, undefined, 'HEAD')).status, 200, 'HEAD');
  }
  t.equal(upstreamRequests(up), 0, 'no request reached the upstream');
});

t.test('expired tags and blobs are served from the cache without revalidation', async (t) => {
  const { up, cached, offline } = await setup(t, { manifestInvalidationMs: 0, blobInvalidationMs: 0 });
  t.equal((await get(offline, up, 'manifests/v1', ACCEPT)).status, 200, 'tag past manifest_invalidation_time');
  t.equal((await get(offline, up, `blobs/${cached.layerDigests[0]}`)).status, 200, 'blob past blob_invalidation_time');
  t.equal(upstreamRequests(up), 0, 'no HEAD to revalidate');
});

t.test('an uncached manifest is MANIFEST_UNKNOWN (404), by tag and by digest, and upstream is not asked', async (t) => {
  const { up, uncached, offline } = await setup(t);
  const byTag = await get(offline, up, 'manifests/v2', ACCEPT);
  t.equal(byTag.status, 404);
  t.equal(byTag.code, 'MANIFEST_UNKNOWN');
  const byDigest = await get(offline, up, `manifests/${uncached.digest}`, ACCEPT);
  t.equal(byDigest.status, 404);
  t.equal(byDigest.code, 'MANIFEST_UNKNOWN');
  t.equal((await get(offline, up, 'manifests/v2', ACCEPT, 'HEAD')).status, 404, 'HEAD too');
  t.equal(upstreamRequests(up), 0);
});

t.test('an uncached blob is BLOB_UNKNOWN (404) for GET and HEAD, and upstream is not asked', async (t) => {
  const { up, uncached, offline } = await setup(t);
  const digest = uncached.layerDigests[0] as string;
  const res = await get(offline, up, `blobs/${digest}`);
  t.equal(res.status, 404);
  t.equal(res.code, 'BLOB_UNKNOWN');
  t.equal((await get(offline, up, `blobs/${digest}`, undefined, 'HEAD')).status, 404, 'HEAD');
  t.equal(upstreamRequests(up), 0);
});

t.test('tags/list lists the cached tags, and NAME_UNKNOWN for a repository without any', async (t) => {
  const { up, offline } = await setup(t);
  const res = await get(offline, up, 'tags/list');
  t.equal(res.status, 200);
  t.same(JSON.parse(res.body.toString()), { name: REPO, tags: ['also-v1', 'v1'] }, 'cached tags only (not v2)');
  const paged = await get(offline, up, 'tags/list?n=1');
  t.same((JSON.parse(paged.body.toString()) as { tags: string[] }).tags, ['also-v1'], 'n applies');
  const other = await fetch(`${offline.url}/v2/library/other/tags/list?ns=${up.host}`);
  t.equal(other.status, 404);
  t.equal(((await other.json()) as { errors: Array<{ code: string }> }).errors[0]?.code, 'NAME_UNKNOWN');
  t.equal(upstreamRequests(up), 0);
});

t.test('referrers answer an empty index without asking upstream', async (t) => {
  const { up, cached, offline } = await setup(t);
  const res = await get(offline, up, `referrers/${cached.digest}`);
  t.equal(res.status, 200);
  t.same((JSON.parse(res.body.toString()) as { manifests: unknown[] }).manifests, []);
  t.equal(upstreamRequests(up), 0);
});
