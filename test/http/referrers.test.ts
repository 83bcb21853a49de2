import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { sha256 } from '../fixtures/content.js';
import { reply, startRawUpstream } from '../fixtures/raw-upstream.js';
import { addTagSchemaIndex, referrerDescriptor, tagSchemaTag } from '../fixtures/referrers.js';
import { MEDIA_TYPES, startFixtureUpstream, type AddedImage, type FixtureOptions, type FixtureUpstream } from '../fixtures/upstream.js';
import { startMirror, type TestMirror } from '../helpers/mirror.js';

const SIG = 'application/vnd.example.signature';
const SBOM = 'application/vnd.example.sbom';

interface Index {
  schemaVersion: number;
  mediaType: string;
  manifests: { digest: string; artifactType?: string; mediaType: string; size: number }[];
}

interface Setup {
  up: FixtureUpstream;
  mirror: TestMirror;
  subject: AddedImage;
  sig: AddedImage;
  sbom: AddedImage;
}

async function setup(t: Test, options?: FixtureOptions): Promise<Setup> {
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

/** An upstream without the referrers API whose clients wrote the tag-schema index for sig and sbom. */
async function setupTagSchema(t: Test): Promise<Setup & { tagIndex: { digest: string; bytes: Buffer } }> {
  const s = await setup(t, { referrers: false });
  return { ...s, tagIndex: addTagSchemaIndex(s.up, 'org/app', s.subject.digest, [s.sig, s.sbom]) };
}

async function referrers(mirror: TestMirror, path: string, init: RequestInit = {}): Promise<{ res: Response; index: Index }> {
  const res = await fetch(`${mirror.url}${path}`, init);
  return { res, index: (await res.json()) as Index };
}

async function errorOf(res: Response): Promise<{ status: number; code: string | undefined; contentType: string | null; text: string }> {
  const text = await res.text();
  let code: string | undefined;
  try {
    code = (JSON.parse(text) as { errors: { code: string }[] }).errors[0]?.code;
  } catch {
    code = undefined;
  }
  return { status: res.status, code, contentType: res.headers.get('content-type'), text };
}

const digests = (index: Index): string[] => index.manifests.map((m) => m.digest).sort();
const q = (artifactType: string): string => `?artifactType=${encodeURIComponent(artifactType)}`;

t.test('referrers pass through as an OCI image index with its Content-Type', async (t) => {
  const { mirror, subject, sig, sbom } = await setup(t);
  const { res, index } = await referrers(mirror, `/v2/org/app/referrers/${subject.digest}`);
  t.equal(res.status, 200);
  t.equal(res.headers.get('content-type'), MEDIA_TYPES.ociIndex);
  t.equal(index.schemaVersion, 2);
  t.equal(index.mediaType, MEDIA_TYPES.ociIndex);
  t.same(digests(index), [sig.digest, sbom.digest].sort());
  t.equal(res.headers.get('oci-filters-applied'), null, 'no filter asked, none applied');
});

t.test('the artifactType filter passes through and OCI-Filters-Applied is echoed', async (t) => {
  const { up, mirror, subject, sig } = await setup(t);
  const { res, index } = await referrers(mirror, `/v2/org/app/referrers/${subject.digest}${q(SIG)}`);
  t.equal(res.status, 200);
  t.equal(res.headers.get('oci-filters-applied'), 'artifactType');
  t.same(
    index.manifests.map((m) => m.digest),
    [sig.digest],
  );
  t.equal(index.manifests[0]?.artifactType, SIG);
  const sent = up.requests.find((r) => r.path.includes('/referrers/'));
  t.equal(sent?.query.get('artifactType'), SIG, 'the filter reached the upstream');
});

t.test('an upstream API that ignores artifactType: the mirror filters and sends OCI-Filters-Applied', async (t) => {
  const { mirror, subject, sbom } = await setup(t, { referrers: 'unfiltered' });
  const { res, index } = await referrers(mirror, `/v2/org/app/referrers/${subject.digest}${q(SBOM)}`);
  t.equal(res.status, 200);
  t.equal(res.headers.get('oci-filters-applied'), 'artifactType');
  t.same(
    index.manifests.map((m) => m.digest),
    [sbom.digest],
  );
});

t.test('a subject without referrers is an empty index', async (t) => {
  const { mirror } = await setup(t);
  const { res, index } = await referrers(mirror, `/v2/org/app/referrers/${sha256('no referrers')}`);
  t.equal(res.status, 200);
  t.same(index.manifests, []);
});

t.test('the API is preferred when the upstream has it: the tag-schema index is not consulted', async (t) => {
  const { up, mirror, subject, sig, sbom } = await setup(t);
  // A stale tag-schema index left behind by an older client: lists the signature only.
  addTagSchemaIndex(up, 'org/app', subject.digest, [sig]);
  const { res, index } = await referrers(mirror, `/v2/org/app/referrers/${subject.digest}`);
  t.equal(res.status, 200);
  t.same(digests(index), [sig.digest, sbom.digest].sort(), 'the API answer');
  t.equal(up.countRequests({ pathIncludes: `/manifests/${tagSchemaTag(subject.digest)}` }), 0, 'the tag was not fetched');
});

t.test('without the referrers API, the index at tag <alg>-<hex> of the subject is listed', async (t) => {
  const { up, mirror, subject, sig, sbom } = await setupTagSchema(t);
  const { res, index } = await referrers(mirror, `/v2/org/app/referrers/${subject.digest}`);
  t.equal(res.status, 200);
  t.equal(res.headers.get('content-type'), MEDIA_TYPES.ociIndex);
  t.equal(res.headers.get('oci-filters-applied'), null);
  t.equal(index.schemaVersion, 2);
  t.equal(index.mediaType, MEDIA_TYPES.ociIndex);
  t.same(index.manifests, [referrerDescriptor(sig), referrerDescriptor(sbom)], 'the descriptors as the tag-schema index holds them');
  t.equal(
    up.countRequests({ method: 'GET', pathIncludes: `/v2/org/app/manifests/${tagSchemaTag(subject.digest)}` }),
    1,
    'the tag was fetched once',
  );
});

t.test('without the referrers API, artifactType is filtered by the mirror with OCI-Filters-Applied', async (t) => {
  const { mirror, subject, sig, sbom } = await setupTagSchema(t);
  const one = await referrers(mirror, `/v2/org/app/referrers/${subject.digest}${q(SIG)}`);
  t.equal(one.res.status, 200);
  t.equal(one.res.headers.get('oci-filters-applied'), 'artifactType');
  t.same(digests(one.index), [sig.digest]);
  const other = await referrers(mirror, `/v2/org/app/referrers/${subject.digest}${q(SBOM)}`);
  t.same(digests(other.index), [sbom.digest]);
  const none = await referrers(mirror, `/v2/org/app/referrers/${subject.digest}${q('application/vnd.example.unknown')}`);
  t.equal(none.res.headers.get('oci-filters-applied'), 'artifactType');
  t.same(none.index.manifests, []);
});

t.test('without the referrers API and without a tag-schema index, the answer is an empty index (200, not 404)', async (t) => {
  const { mirror, subject } = await setup(t, { referrers: false });
  const { res, index } = await referrers(mirror, `/v2/org/app/referrers/${subject.digest}`);
  t.equal(res.status, 200);
  t.equal(res.headers.get('content-type'), MEDIA_TYPES.ociIndex);
  t.same(index, { schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests: [] });
});

t.test('without the referrers API and without a tag-schema index, a filtered request is an empty filtered index', async (t) => {
  const { mirror, subject } = await setup(t, { referrers: false });
  const { res, index } = await referrers(mirror, `/v2/org/app/referrers/${subject.digest}${q(SIG)}`);
  t.equal(res.status, 200);
  t.equal(res.headers.get('oci-filters-applied'), 'artifactType');
  t.same(index.manifests, []);
});

t.test('an upstream answering the referrers path with a 200 page (not an index) is treated as having no API', async (t) => {
  const { up, mirror, subject, sig, sbom } = await setup(t, { referrers: 'page' });
  addTagSchemaIndex(up, 'org/app', subject.digest, [sig, sbom]);
  const { res, index } = await referrers(mirror, `/v2/org/app/referrers/${subject.digest}`);
  t.equal(res.status, 200);
  t.same(digests(index), [sig.digest, sbom.digest].sort());
});

t.test('the tag-schema index stays pullable as a manifest, byte for byte', async (t) => {
  const { mirror, subject, tagIndex } = await setupTagSchema(t);
  await referrers(mirror, `/v2/org/app/referrers/${subject.digest}`);
  const res = await fetch(`${mirror.url}/v2/org/app/manifests/${tagSchemaTag(subject.digest)}`, {
    headers: { accept: MEDIA_TYPES.ociIndex },
  });
  t.equal(res.status, 200);
  t.equal(res.headers.get('docker-content-digest'), tagIndex.digest);
  t.same(Buffer.from(await res.arrayBuffer()), tagIndex.bytes);
});

t.test('HEAD of referrers answers the headers of the GET without a body', async (t) => {
  const { mirror, subject } = await setupTagSchema(t);
  const get = await fetch(`${mirror.url}/v2/org/app/referrers/${subject.digest}`);
  const length = (await get.arrayBuffer()).byteLength;
  const head = await fetch(`${mirror.url}/v2/org/app/referrers/${subject.digest}`, { method: 'HEAD' });
  t.equal(head.status, 200);
  t.equal(head.headers.get('content-type'), MEDIA_TYPES.ociIndex);
  t.equal(head.headers.get('content-length'), String(length));
  t.equal((await head.arrayBuffer()).byteLength, 0);
});

t.test('a sha512 subject is looked up at tag sha512-<first 64 hex> (tags are at most 128 characters)', async (t) => {
  const { up, mirror, sig } = await setup(t, { referrers: false });
  const subject = `sha512:${createHash('sha512').update('subject').digest('hex')}`;
  const tag = `sha512-${subject.slice('sha512:'.length, 'sha512:'.length + 64)}`;
  up.addManifest(
    'org/app',
    { schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests: [referrerDescriptor(sig)] },
    MEDIA_TYPES.ociIndex,
    tag,
  );
  const { res, index } = await referrers(mirror, `/v2/org/app/referrers/${subject}`);
  t.equal(res.status, 200);
  t.same(digests(index), [sig.digest]);
});

t.test('tag-schema entries that are not usable descriptors are dropped; the others are listed', async (t) => {
  const { up, mirror, subject, sig } = await setup(t, { referrers: false });
  const junk = [
    'a string',
    null,
    [1, 2],
    { mediaType: MEDIA_TYPES.ociManifest, size: 1 },
    { mediaType: MEDIA_TYPES.ociManifest, digest: 'sha256:xyz', size: 1 },
    { mediaType: MEDIA_TYPES.ociManifest, digest: sig.digest, size: -1 },
    { mediaType: MEDIA_TYPES.ociManifest, digest: sig.digest, size: '12' },
    { digest: sig.digest, size: 1 },
    { mediaType: MEDIA_TYPES.ociManifest, digest: sig.digest, size: 1, artifactType: 42 },
  ];
  const manifests = [...junk, referrerDescriptor(sig)];
  up.addManifest(
    'org/app',
    { schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests },
    MEDIA_TYPES.ociIndex,
    tagSchemaTag(subject.digest),
  );
  const { res, index } = await referrers(mirror, `/v2/org/app/referrers/${subject.digest}`);
  t.equal(res.status, 200);
  t.same(index.manifests, [referrerDescriptor(sig)]);
});

t.test('a tag-schema index that is not JSON is a clean 502 OCI error (no stack, not an empty index)', async (t) => {
  const { up, mirror, subject } = await setup(t, { referrers: false });
  up.addManifest('org/app', Buffer.from('{"manifests": [ this is not json'), MEDIA_TYPES.ociIndex, tagSchemaTag(subject.digest));
  const err = await errorOf(await fetch(`${mirror.url}/v2/org/app/referrers/${subject.digest}`));
  t.equal(err.status, 502);
  t.equal(err.code, 'UPSTREAM_ERROR');
  t.match(err.contentType, /^application\/json/);
  t.notMatch(err.text, /\bat \S+\.(?:js|ts):\d+/, 'no stack trace');
});

t.test('a tag-schema index without a manifests array is a clean 502 OCI error', async (t) => {
  const { up, mirror, subject } = await setup(t, { referrers: false });
  up.addManifest(
    'org/app',
    { schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests: 'none' },
    MEDIA_TYPES.ociIndex,
    tagSchemaTag(subject.digest),
  );
  const err = await errorOf(await fetch(`${mirror.url}/v2/org/app/referrers/${subject.digest}`));
  t.equal(err.status, 502);
  t.equal(err.code, 'UPSTREAM_ERROR');
});

t.test('an oversized tag-schema index (over 4 MiB) is a clean 502 OCI error', async (t) => {
  const { up, mirror, subject, sig } = await setup(t, { referrers: false });
  const big = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociIndex,
    manifests: [referrerDescriptor(sig)],
    annotations: { pad: 'x'.repeat(4 * 1024 * 1024) },
  };
  up.addManifest('org/app', big, MEDIA_TYPES.ociIndex, tagSchemaTag(subject.digest));
  const err = await errorOf(await fetch(`${mirror.url}/v2/org/app/referrers/${subject.digest}`));
  t.equal(err.status, 502);
  t.equal(err.code, 'UPSTREAM_ERROR');
  t.ok(err.text.length < 2000, 'a short error body');
});

t.test('a tag-schema tag holding an image manifest (not an index) lists no referrers', async (t) => {
  const { up, mirror, subject } = await setup(t, { referrers: false });
  const image = up.addImage('org/app', { layers: [Buffer.from('something else')] });
  up.setTag('org/app', tagSchemaTag(subject.digest), image.digest);
  const { res, index } = await referrers(mirror, `/v2/org/app/referrers/${subject.digest}`);
  t.equal(res.status, 200);
  t.same(index, { schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests: [] });
});

t.test('artifactType values are compared, never interpreted: odd values filter to nothing', async (t) => {
  const { up, mirror, subject } = await setupTagSchema(t);
  for (const odd of ['../../etc/passwd', '"}],"manifests":[{"x":1}]}', 'a'.repeat(4000), '*', `${SIG}\r\nx-injected: 1`]) {
    const res = await fetch(`${mirror.url}/v2/org/app/referrers/${subject.digest}${q(odd)}`);
    t.equal(res.status, 200, `status for ${JSON.stringify(odd.slice(0, 30))}`);
    t.equal(res.headers.get('x-injected'), null);
    t.same(((await res.json()) as Index).manifests, [], 'nothing matches');
  }
  t.equal(up.countRequests({ pathIncludes: '/manifests/' }), 1, 'only the one tag was ever fetched');
});

t.test('a repeated artifactType parameter filters by the first', async (t) => {
  const { mirror, subject, sig } = await setupTagSchema(t);
  const { index } = await referrers(mirror, `/v2/org/app/referrers/${subject.digest}${q(SIG)}&artifactType=${encodeURIComponent(SBOM)}`);
  t.same(digests(index), [sig.digest]);
});

t.test('a 404 from the referrers API for one repository does not switch other repositories to the tag schema', async (t) => {
  const { up, mirror, subject, sig, sbom } = await setup(t);
  // A client names a repository the upstream answers 404 for (a made-up name, a registry quirk).
  up.setGlobalFault({ kind: 'status', status: 404, times: 1 });
  const other = await referrers(mirror, `/v2/org/made-up/referrers/${subject.digest}`);
  t.equal(other.res.status, 200);
  up.clearRequests();
  const { index } = await referrers(mirror, `/v2/org/app/referrers/${subject.digest}`);
  t.same(digests(index), [sig.digest, sbom.digest].sort(), 'org/app is still answered by the API');
  t.equal(up.countRequests({ pathIncludes: '/v2/org/app/referrers/' }), 1);
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
