/**
 * The referrers cache policy (src/proxy/referrers-service.ts): the tag-schema index is a cached tag
 * (manifest_invalidation_time, revalidation, serve-stale, offline); pass-through API answers are asked
 * for every time and kept in memory for outages; "no API" is remembered per repository for a while.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { NO_API_RECHECK_MS } from '../../src/proxy/referrers-service.js';
import { addTagSchemaIndex, tagSchemaTag } from '../fixtures/referrers.js';
import { MEDIA_TYPES, startFixtureUpstream, type AddedImage, type FixtureOptions, type FixtureUpstream } from '../fixtures/upstream.js';
import { startMirror, type StartMirrorOptions, type TestMirror } from '../helpers/mirror.js';

const REPO = 'org/app';
const SIG = 'application/vnd.example.signature';
const SBOM = 'application/vnd.example.sbom';

interface Fixture {
  up: FixtureUpstream;
  subject: AddedImage;
  sig: AddedImage;
  sbom: AddedImage;
  root: string;
  /** Mirror options for this upstream and cache root; a test adds its own. */
  options(extra?: Partial<StartMirrorOptions> & { manifestInvalidationMs?: number }): StartMirrorOptions;
}

async function fixture(t: Test, upstream: FixtureOptions = { referrers: false }): Promise<Fixture> {
  const up = await startFixtureUpstream(upstream);
  t.teardown(() => up.close());
  const subject = up.addImage(REPO, { tag: 'v1' });
  const desc = { mediaType: MEDIA_TYPES.ociManifest, digest: subject.digest, size: subject.bytes.length };
  const sig = up.addImage(REPO, { artifactType: SIG, subject: desc, layers: [Buffer.from('signature')] });
  const sbom = up.addImage(REPO, { artifactType: SBOM, subject: desc, layers: [Buffer.from('sbom')] });
  const root = await mkdtemp(join(tmpdir(), 'referrers-test-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  return {
    up,
    subject,
    sig,
    sbom,
    root,
    options: ({ manifestInvalidationMs, ...extra } = {}) => ({
      upstreams: [{ namespace: up.host, host: up.host, ...(manifestInvalidationMs === undefined ? {} : { manifestInvalidationMs }) }],
      root,
      ...extra,
    }),
  };
}

async function start(t: Test, options: StartMirrorOptions): Promise<TestMirror> {
  const m = await startMirror(options);
  t.teardown(() => m.close());
  return m;
}

interface Answer {
  status: number;
  warning: string | null;
  filters: string | null;
  digests: string[];
  code: string | undefined;
}

async function referrers(m: TestMirror, up: FixtureUpstream, subject: string, artifactType?: string): Promise<Answer> {
  const filter = artifactType ? `&artifactType=${encodeURIComponent(artifactType)}` : '';
  const res = await fetch(`${m.url}/v2/${REPO}/referrers/${subject}?ns=${up.host}${filter}`);
  const body = (await res.json()) as { manifests?: { digest: string }[]; errors?: { code: string }[] };
  return {
    status: res.status,
    warning: res.headers.get('warning'),
    filters: res.headers.get('oci-filters-applied'),
    digests: (body.manifests ?? []).map((d) => d.digest).sort(),
    code: body.errors?.[0]?.code,
  };
}

const sorted = (...images: AddedImage[]): string[] => images.map((i) => i.digest).sort();

t.test('the tag-schema answer is cached: within manifest_invalidation_time the upstream is not asked again', async (t) => {
  const f = await fixture(t);
  addTagSchemaIndex(f.up, REPO, f.subject.digest, [f.sig, f.sbom]);
  const m = await start(t, f.options());
  t.same((await referrers(m, f.up, f.subject.digest)).digests, sorted(f.sig, f.sbom));
  f.up.clearRequests();
  const again = await referrers(m, f.up, f.subject.digest);
  t.same(again.digests, sorted(f.sig, f.sbom));
  t.same((await referrers(m, f.up, f.subject.digest, SIG)).digests, sorted(f.sig), 'a filtered request uses the same cached index');
  t.equal(f.up.countRequests({}), 0, 'neither the API nor the tag was asked');
});

t.test('an expired tag-schema index is revalidated: a referrer added upstream is listed', async (t) => {
  const f = await fixture(t);
  addTagSchemaIndex(f.up, REPO, f.subject.digest, [f.sig]);
  const m = await start(t, f.options({ manifestInvalidationMs: 0 }));
  t.same((await referrers(m, f.up, f.subject.digest)).digests, sorted(f.sig));
  addTagSchemaIndex(f.up, REPO, f.subject.digest, [f.sig, f.sbom]); // a client pushed the SBOM and moved the tag
  t.same((await referrers(m, f.up, f.subject.digest)).digests, sorted(f.sig, f.sbom));
});

t.test('with the upstream down, an expired tag-schema index is served stale with a Warning', async (t) => {
  const f = await fixture(t);
  addTagSchemaIndex(f.up, REPO, f.subject.digest, [f.sig, f.sbom]);
  const m = await start(t, f.options({ manifestInvalidationMs: 0 }));
  t.equal((await referrers(m, f.up, f.subject.digest)).status, 200);
  await m.settled();
  await f.up.stop();
  const stale = await referrers(m, f.up, f.subject.digest);
  t.equal(stale.status, 200);
  t.same(stale.digests, sorted(f.sig, f.sbom));
  t.equal(stale.warning, '110 - "Response is Stale"');
  const filtered = await referrers(m, f.up, f.subject.digest, SBOM);
  t.same(filtered.digests, sorted(f.sbom));
  t.equal(filtered.filters, 'artifactType');
});

t.test('after a restart with the upstream down, the stored tag-schema index still answers', async (t) => {
  const f = await fixture(t);
  addTagSchemaIndex(f.up, REPO, f.subject.digest, [f.sig, f.sbom]);
  const first = await startMirror(f.options({ manifestInvalidationMs: 0 }));
  t.equal((await referrers(first, f.up, f.subject.digest)).status, 200);
  await first.close();
  await f.up.stop();
  // A new process knows nothing of the upstream's API: the API call fails, the stored tag answers.
  const m = await start(t, f.options({ manifestInvalidationMs: 0 }));
  const stale = await referrers(m, f.up, f.subject.digest);
  t.equal(stale.status, 200);
  t.same(stale.digests, sorted(f.sig, f.sbom));
  t.equal(stale.warning, '110 - "Response is Stale"');
});

t.test('with the upstream down and nothing cached, the answer is a 503 OCI error, never an empty index', async (t) => {
  const f = await fixture(t);
  const m = await start(t, f.options());
  await f.up.stop();
  const res = await referrers(m, f.up, f.subject.digest);
  t.equal(res.status, 503);
  t.equal(res.code, 'UPSTREAM_UNAVAILABLE');
});

t.test('an absent tag is not remembered as empty: a tag-schema index pushed later is listed', async (t) => {
  const f = await fixture(t);
  const m = await start(t, f.options());
  t.same((await referrers(m, f.up, f.subject.digest)).digests, []);
  addTagSchemaIndex(f.up, REPO, f.subject.digest, [f.sig]);
  t.same((await referrers(m, f.up, f.subject.digest)).digests, sorted(f.sig));
});

t.test('pass-through answers are asked for every time and served stale from memory during an outage', async (t) => {
  const f = await fixture(t, { referrers: true });
  const m = await start(t, f.options());
  t.same((await referrers(m, f.up, f.subject.digest)).digests, sorted(f.sig, f.sbom));
  t.same((await referrers(m, f.up, f.subject.digest, SIG)).digests, sorted(f.sig));
  t.equal(f.up.countRequests({ pathIncludes: '/referrers/' }), 2, 'each request asked the API');
  await f.up.stop();
  const stale = await referrers(m, f.up, f.subject.digest);
  t.equal(stale.status, 200);
  t.same(stale.digests, sorted(f.sig, f.sbom));
  t.equal(stale.warning, '110 - "Response is Stale"');
  const staleFiltered = await referrers(m, f.up, f.subject.digest, SIG);
  t.same(staleFiltered.digests, sorted(f.sig));
  t.equal(staleFiltered.filters, 'artifactType');
  t.equal((await referrers(m, f.up, f.subject.digest, SBOM)).status, 503, 'an answer never seen is not made up');
});

t.test('pass-through: a 429 from upstream with serve_stale off is passed on, not hidden', async (t) => {
  const f = await fixture(t, { referrers: true });
  const m = await start(t, { ...f.options(), upstreams: [{ namespace: f.up.host, host: f.up.host, serveStale: false }] });
  t.equal((await referrers(m, f.up, f.subject.digest)).status, 200);
  f.up.setGlobalFault({ kind: 'status', status: 429, headers: { 'Retry-After': '7' }, times: 1 });
  const res = await referrers(m, f.up, f.subject.digest);
  t.equal(res.status, 429);
  t.equal(res.code, 'TOOMANYREQUESTS');
});

t.test('"no referrers API" is remembered per repository and asked again after NO_API_RECHECK_MS', async (t) => {
  const f = await fixture(t, { referrers: true });
  let clock = Date.now();
  const m = await start(t, f.options({ now: () => clock }));
  // The API is missing once (say, before an upgrade of the upstream): the tag schema answers.
  f.up.setGlobalFault({ kind: 'status', status: 404, times: 1 });
  t.same((await referrers(m, f.up, f.subject.digest)).digests, [], 'no tag-schema index: empty');
  f.up.clearRequests();
  t.same((await referrers(m, f.up, f.subject.digest)).digests, [], 'still the tag schema');
  t.equal(f.up.countRequests({ pathIncludes: '/referrers/' }), 0, 'the API was not asked again yet');
  clock += NO_API_RECHECK_MS + 1;
  t.same((await referrers(m, f.up, f.subject.digest)).digests, sorted(f.sig, f.sbom), 'the API answers again');
  t.equal(f.up.countRequests({ pathIncludes: '/referrers/' }), 1);
});

t.test('offline: the stored tag-schema index answers, whatever its age, without contacting the upstream', async (t) => {
  const f = await fixture(t);
  addTagSchemaIndex(f.up, REPO, f.subject.digest, [f.sig, f.sbom]);
  const online = await startMirror(f.options({ manifestInvalidationMs: 0 }));
  t.equal((await referrers(online, f.up, f.subject.digest)).status, 200);
  await online.close();
  const offline = await start(t, f.options({ manifestInvalidationMs: 0, offline: true }));
  f.up.clearRequests();
  const res = await referrers(offline, f.up, f.subject.digest);
  t.equal(res.status, 200);
  t.same(res.digests, sorted(f.sig, f.sbom));
  const filtered = await referrers(offline, f.up, f.subject.digest, SIG);
  t.same(filtered.digests, sorted(f.sig));
  t.equal(filtered.filters, 'artifactType');
  t.same((await referrers(offline, f.up, f.sig.digest)).digests, [], 'an uncached subject: empty index');
  t.equal(f.up.countRequests({}), 0, 'no upstream request');
});

t.test('the cached tag-schema index is a tag of the repository like any other (listed offline)', async (t) => {
  const f = await fixture(t);
  addTagSchemaIndex(f.up, REPO, f.subject.digest, [f.sig]);
  const online = await startMirror(f.options());
  await referrers(online, f.up, f.subject.digest);
  await online.close();
  const offline = await start(t, f.options({ offline: true }));
  const res = await fetch(`${offline.url}/v2/${REPO}/tags/list?ns=${f.up.host}`);
  t.same(((await res.json()) as { tags: string[] }).tags, [tagSchemaTag(f.subject.digest)]);
});
