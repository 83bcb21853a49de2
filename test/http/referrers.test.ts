import t, { type Test } from 'tap';
import { sha256 } from '../fixtures/content.js';
import { reply, startRawUpstream } from '../fixtures/raw-upstream.js';
import { MEDIA_TYPES, startFixtureUpstream, type AddedImage, type FixtureOptions, type FixtureUpstream } from '../fixtures/upstream.js';
import { startMirror, type TestMirror } from '../helpers/mirror.js';

const SIG = 'application/vnd.example.signature';
const SBOM = 'application/vnd.example.sbom';

interface Index {
  schemaVersion: number;
  mediaType: string;
  manifests: { digest: string; artifactType?: string; mediaType: string; size: number }[];
}

async function setup(t: Test, options?: FixtureOptions): Promise<{ up: FixtureUpstream; mirror: TestMirror; subject: AddedImage; sig: AddedImage; sbom: AddedImage }> {
  const up = await startFixtureUpstream(options);
  t.teardown(() => up.close());
  const subject = up.addImage('org/app', { tag: 'v1' });
  const desc = { mediaType: MEDIA_TYPES.ociManifest, digest: subject.digest, size: subject.bytes.length };
  const sig = up.addImage('org/app', { artifactType: SIG, subject: desc, layers: [Buffer.from('signature')] });
  const sbom = up.addImage('org/app', { artifactType: SBOM, subject: desc, layers: [Buffer.from('sbom')] });
  const mirror = await startMirror({ upstreams: [{ namespace: 'fixture.test', host: up.host }], defaultNamespace: 'fixture.test' });
  t.teardown(() => mirror.close());
  return { up, mirror, subject, sig, sbom };
}

async function referrers(mirror: TestMirror, path: string): Promise<{ res: Response; index: Index }> {
  const res = await fetch(`${mirror.url}${path}`);
  return { res, index: (await res.json()) as Index };
}

t.test('referrers pass through as an OCI image index with its Content-Type', async (t) => {
  const { mirror, subject, sig, sbom } = await setup(t);
  const { res, index } = await referrers(mirror, `/v2/org/app/referrers/${subject.digest}`);
  t.equal(res.status, 200);
  t.equal(res.headers.get('content-type'), MEDIA_TYPES.ociIndex);
  t.equal(index.schemaVersion, 2);
  t.equal(index.mediaType, MEDIA_TYPES.ociIndex);
  t.same(index.manifests.map((m) => m.digest).sort(), [sig.digest, sbom.digest].sort());
  t.equal(res.headers.get('oci-filters-applied'), null, 'no filter asked, none applied');
});

t.test('the artifactType filter passes through and OCI-Filters-Applied is echoed', async (t) => {
  const { up, mirror, subject, sig } = await setup(t);
  const { res, index } = await referrers(mirror, `/v2/org/app/referrers/${subject.digest}?artifactType=${encodeURIComponent(SIG)}`);
  t.equal(res.status, 200);
  t.equal(res.headers.get('oci-filters-applied'), 'artifactType');
  t.same(index.manifests.map((m) => m.digest), [sig.digest]);
  t.equal(index.manifests[0]?.artifactType, SIG);
  const sent = up.requests.find((r) => r.path.includes('/referrers/'));
  t.equal(sent?.query.get('artifactType'), SIG, 'the filter reached the upstream');
});

t.test('a subject without referrers is an empty index', async (t) => {
  const { mirror } = await setup(t);
  const { res, index } = await referrers(mirror, `/v2/org/app/referrers/${sha256('no referrers')}`);
  t.equal(res.status, 200);
  t.same(index.manifests, []);
});

t.test('an upstream without the referrers API gives an empty index, not a 404', async (t) => {
  const { mirror, subject } = await setup(t, { referrers: false });
  const { res, index } = await referrers(mirror, `/v2/org/app/referrers/${subject.digest}`);
  t.equal(res.status, 200);
  t.equal(res.headers.get('content-type'), MEDIA_TYPES.ociIndex);
  t.same(index, { schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests: [] });
});

t.test('an upstream without the referrers API gives an empty index for a filtered request too', async (t) => {
  const { mirror, subject } = await setup(t, { referrers: false });
  const { res, index } = await referrers(mirror, `/v2/org/app/referrers/${subject.digest}?artifactType=${encodeURIComponent(SIG)}`);
  t.equal(res.status, 200);
  t.same(index.manifests, []);
});

t.test('a referrers request with an invalid digest is 400 DIGEST_INVALID', async (t) => {
  const { up, mirror } = await setup(t);
  const res = await fetch(`${mirror.url}/v2/org/app/referrers/sha256:abc`);
  t.equal(res.status, 400);
  t.equal(((await res.json()) as { errors: { code: string }[] }).errors[0]?.code, 'DIGEST_INVALID');
  t.equal(up.countRequests({ pathIncludes: '/referrers/' }), 0, 'refused before any upstream contact');
});

t.test('an upstream referrers body of null (or without a manifests list) is 502 with an OCI error, never passed through', async (t) => {
  for (const body of ['null', '{"schemaVersion":2}']) {
    const up = await startRawUpstream((_req, res) => reply(res, 200, MEDIA_TYPES.ociIndex, body));
    t.teardown(() => up.close());
    const mirror = await startMirror({ upstreams: [{ namespace: 'raw.test', host: up.host }], defaultNamespace: 'raw.test' });
    t.teardown(() => mirror.close());
    const res = await fetch(`${mirror.url}/v2/org/app/referrers/sha256:${'c'.repeat(64)}`);
    t.equal(res.status, 502, `${body}: 502`);
    t.equal(((await res.json()) as { errors: { code: string }[] }).errors[0]?.code, 'UPSTREAM_ERROR', `${body}: UPSTREAM_ERROR`);
  }
});
