import t, { type Test } from 'tap';
import { request as httpRequest } from 'node:http';
import { sha256 } from '../fixtures/content.js';
import { reply, startRawUpstream } from '../fixtures/raw-upstream.js';
import { MEDIA_TYPES, startFixtureUpstream, type FixtureUpstream } from '../fixtures/upstream.js';
import { startMirror, type TestMirror } from '../helpers/mirror.js';

const OCI_MANIFEST = MEDIA_TYPES.ociManifest;
const OCI_INDEX = MEDIA_TYPES.ociIndex;
const DOCKER_MANIFEST = MEDIA_TYPES.dockerManifest;
const DOCKER_LIST = MEDIA_TYPES.dockerManifestList;
const CONTAINERD_ACCEPT = `${DOCKER_MANIFEST}, ${DOCKER_LIST}, ${OCI_MANIFEST}, ${OCI_INDEX}, */*`;

async function setup(t: Test): Promise<{ up: FixtureUpstream; mirror: TestMirror }> {
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  const mirror = await startMirror({ upstreams: [{ namespace: 'fixture.test', host: up.host }], defaultNamespace: 'fixture.test' });
  t.teardown(() => mirror.close());
  return { up, mirror };
}

async function get(mirror: TestMirror, path: string, init: RequestInit = {}): Promise<{ res: Response; body: Buffer }> {
  const res = await fetch(`${mirror.url}${path}`, init);
  return { res, body: Buffer.from(await res.arrayBuffer()) };
}

function accept(type: string): RequestInit {
  return { headers: { accept: type } };
}

async function expectError(t: Test, res: Response, body: Buffer, status: number, code: string): Promise<void> {
  t.equal(res.status, status, `status ${status}`);
  t.match(res.headers.get('content-type'), /^application\/json/);
  const doc = JSON.parse(body.toString()) as { errors: { code: string; message: string }[] };
  t.equal(doc.errors[0]?.code, code);
  t.type(doc.errors[0]?.message, 'string');
}

/** A raw GET with exactly these headers (fetch always adds Accept: *\/*). */
function rawGet(
  url: string,
  headers: Record<string, string>,
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: 'GET', headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** Manifest bytes with odd spacing: re-serializing them would change the digest. */
function oddlyFormatted(up: FixtureUpstream, repo: string, tag: string): { bytes: Buffer; digest: string } {
  const img = up.addImage(repo);
  const bytes = Buffer.from(JSON.stringify(img.manifest, null, 3).replace(/\n/g, '\r\n') + '\n\n');
  const digest = up.addManifest(repo, bytes, OCI_MANIFEST, tag);
  return { bytes, digest };
}

t.test('a manifest GET by tag returns the exact upstream bytes with Content-Type, Content-Length and Docker-Content-Digest', async (t) => {
  const { up, mirror } = await setup(t);
  const m = oddlyFormatted(up, 'org/app', 'v1');
  const { res, body } = await get(mirror, '/v2/org/app/manifests/v1', accept(OCI_MANIFEST));
  t.equal(res.status, 200);
  t.same(body, m.bytes);
  t.equal(res.headers.get('content-type'), OCI_MANIFEST);
  t.equal(res.headers.get('content-length'), String(m.bytes.length));
  t.equal(res.headers.get('docker-content-digest'), m.digest);
  t.equal(sha256(body), m.digest);
});

t.test('a manifest HEAD by tag answers 200 with Content-Type, Content-Length, Docker-Content-Digest and no body', async (t) => {
  const { up, mirror } = await setup(t);
  const m = oddlyFormatted(up, 'org/app', 'v1');
  const { res, body } = await get(mirror, '/v2/org/app/manifests/v1', { method: 'HEAD', headers: { accept: OCI_MANIFEST } });
  t.equal(res.status, 200);
  t.equal(body.length, 0);
  t.equal(res.headers.get('content-type'), OCI_MANIFEST);
  t.equal(res.headers.get('content-length'), String(m.bytes.length));
  t.equal(res.headers.get('docker-content-digest'), m.digest);
});

t.test('a manifest GET by digest returns the exact bytes with the headers', async (t) => {
  const { up, mirror } = await setup(t);
  const m = oddlyFormatted(up, 'org/app', 'v1');
  const { res, body } = await get(mirror, `/v2/org/app/manifests/${m.digest}`, accept(OCI_MANIFEST));
  t.equal(res.status, 200);
  t.same(body, m.bytes);
  t.equal(res.headers.get('content-type'), OCI_MANIFEST);
  t.equal(res.headers.get('content-length'), String(m.bytes.length));
  t.equal(res.headers.get('docker-content-digest'), m.digest);
});

t.test('a manifest HEAD by digest answers 200 with the headers and no body', async (t) => {
  const { up, mirror } = await setup(t);
  const m = oddlyFormatted(up, 'org/app', 'v1');
  const { res, body } = await get(mirror, `/v2/org/app/manifests/${m.digest}`, { method: 'HEAD', headers: { accept: OCI_MANIFEST } });
  t.equal(res.status, 200);
  t.equal(body.length, 0);
  t.equal(res.headers.get('content-length'), String(m.bytes.length));
  t.equal(res.headers.get('docker-content-digest'), m.digest);
});

t.test('a HEAD by tag followed by a GET by the returned digest gives the same bytes (the containerd resolve flow)', async (t) => {
  const { up, mirror } = await setup(t);
  const img = up.addImage('org/app', { tag: 'v1' });
  const head = await get(mirror, '/v2/org/app/manifests/v1', { method: 'HEAD', headers: { accept: CONTAINERD_ACCEPT } });
  const digest = head.res.headers.get('docker-content-digest') ?? '';
  t.equal(digest, img.digest);
  const { body } = await get(mirror, `/v2/org/app/manifests/${digest}`, accept(CONTAINERD_ACCEPT));
  t.same(body, img.bytes);
});

t.test('a stored media type the client does not accept is 404 MANIFEST_UNKNOWN, never converted', async (t) => {
  const { up, mirror } = await setup(t);
  up.addImage('org/app', { tag: 'v1', format: 'docker' });
  const { res, body } = await get(mirror, '/v2/org/app/manifests/v1', accept(OCI_MANIFEST));
  await expectError(t, res, body, 404, 'MANIFEST_UNKNOWN');
  const ok = await get(mirror, '/v2/org/app/manifests/v1', accept(DOCKER_MANIFEST));
  t.equal(ok.res.status, 200, 'the same manifest is served to a client that accepts it');
  t.equal(ok.res.headers.get('content-type'), DOCKER_MANIFEST);
});

t.test('an index requested by a client that accepts only image manifests is 404 MANIFEST_UNKNOWN', async (t) => {
  const { up, mirror } = await setup(t);
  const a = up.addImage('org/app');
  up.addManifest(
    'org/app',
    { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [{ mediaType: OCI_MANIFEST, digest: a.digest, size: a.bytes.length }] },
    OCI_INDEX,
    'multi',
  );
  const { res, body } = await get(mirror, '/v2/org/app/manifests/multi', accept(OCI_MANIFEST));
  await expectError(t, res, body, 404, 'MANIFEST_UNKNOWN');
});

t.test('a request without an Accept header is served whatever the stored type (old clients)', async (t) => {
  const { up, mirror } = await setup(t);
  const img = up.addImage('org/app', { tag: 'v1', format: 'docker' });
  const res = await rawGet(`${mirror.url}/v2/org/app/manifests/v1`, {});
  t.equal(res.status, 200);
  t.same(res.body, img.bytes);
  t.equal(res.headers['content-type'], DOCKER_MANIFEST);
});

t.test("containerd's Accept list is served Docker and OCI manifests and indexes alike", async (t) => {
  const { up, mirror } = await setup(t);
  const d = up.addImage('org/app', { tag: 'docker', format: 'docker' });
  const o = up.addImage('org/app', { tag: 'oci' });
  up.addManifest(
    'org/app',
    { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [{ mediaType: OCI_MANIFEST, digest: o.digest, size: o.bytes.length }] },
    OCI_INDEX,
    'index',
  );
  for (const [tag, type] of [
    ['docker', DOCKER_MANIFEST],
    ['oci', OCI_MANIFEST],
    ['index', OCI_INDEX],
  ] as const) {
    const { res } = await get(mirror, `/v2/org/app/manifests/${tag}`, accept(CONTAINERD_ACCEPT));
    t.equal(res.status, 200, tag);
    t.equal(res.headers.get('content-type'), type, tag);
  }
  t.ok(d.digest);
});

t.test('a multi-arch index and each of its child manifests are served by digest', async (t) => {
  const { up, mirror } = await setup(t);
  const amd = up.addImage('org/multi', { layers: [Buffer.from('amd64 layer')], config: { architecture: 'amd64', os: 'linux' } });
  const arm = up.addImage('org/multi', { layers: [Buffer.from('arm64 layer')], config: { architecture: 'arm64', os: 'linux' } });
  const index = {
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: [
      { mediaType: OCI_MANIFEST, digest: amd.digest, size: amd.bytes.length, platform: { architecture: 'amd64', os: 'linux' } },
      { mediaType: OCI_MANIFEST, digest: arm.digest, size: arm.bytes.length, platform: { architecture: 'arm64', os: 'linux' } },
    ],
  };
  const indexDigest = up.addManifest('org/multi', index, OCI_INDEX, 'latest');
  const both = `${OCI_MANIFEST}, ${OCI_INDEX}`;

  const top = await get(mirror, '/v2/org/multi/manifests/latest', accept(both));
  t.equal(top.res.status, 200);
  t.equal(top.res.headers.get('content-type'), OCI_INDEX);
  t.equal(top.res.headers.get('docker-content-digest'), indexDigest);
  const parsed = JSON.parse(top.body.toString()) as { manifests: { digest: string }[] };
  for (const [i, child] of [amd, arm].entries()) {
    const c = await get(mirror, `/v2/org/multi/manifests/${parsed.manifests[i]?.digest}`, accept(both));
    t.equal(c.res.status, 200);
    t.equal(c.res.headers.get('content-type'), OCI_MANIFEST);
    t.same(c.body, child.bytes);
  }

  await up.stop();
  for (const d of [indexDigest, amd.digest, arm.digest]) {
    const cached = await get(mirror, `/v2/org/multi/manifests/${d}`, accept(both));
    t.equal(cached.res.status, 200, `${d} is cached under its own digest`);
  }
});

t.test('a Docker manifest list and its children are served with their Docker media types', async (t) => {
  const { up, mirror } = await setup(t);
  const child = up.addImage('org/list', { format: 'docker' });
  const listDigest = up.addManifest(
    'org/list',
    {
      schemaVersion: 2,
      mediaType: DOCKER_LIST,
      manifests: [
        { mediaType: DOCKER_MANIFEST, digest: child.digest, size: child.bytes.length, platform: { architecture: 'amd64', os: 'linux' } },
      ],
    },
    DOCKER_LIST,
    'latest',
  );
  const top = await get(mirror, '/v2/org/list/manifests/latest', accept(CONTAINERD_ACCEPT));
  t.equal(top.res.headers.get('content-type'), DOCKER_LIST);
  t.equal(top.res.headers.get('docker-content-digest'), listDigest);
  const c = await get(mirror, `/v2/org/list/manifests/${child.digest}`, accept(CONTAINERD_ACCEPT));
  t.equal(c.res.headers.get('content-type'), DOCKER_MANIFEST);
  t.same(c.body, child.bytes);
});

t.test('a manifest is never content-encoded, even when the client asks for zstd or gzip', async (t) => {
  const { up, mirror } = await setup(t);
  const img = up.addImage('org/app', { tag: 'v1' });
  const res = await rawGet(`${mirror.url}/v2/org/app/manifests/v1`, { accept: OCI_MANIFEST, 'accept-encoding': 'zstd, gzip' });
  t.equal(res.status, 200);
  t.equal(res.headers['content-encoding'], undefined);
  t.same(res.body, img.bytes);
});

t.test('an unknown tag is 404 MANIFEST_UNKNOWN', async (t) => {
  const { mirror } = await setup(t);
  const { res, body } = await get(mirror, '/v2/org/app/manifests/nope', accept(OCI_MANIFEST));
  await expectError(t, res, body, 404, 'MANIFEST_UNKNOWN');
});

t.test('an unknown digest is 404 MANIFEST_UNKNOWN', async (t) => {
  const { mirror } = await setup(t);
  const { res, body } = await get(mirror, `/v2/org/app/manifests/${sha256('nothing')}`, accept(OCI_MANIFEST));
  await expectError(t, res, body, 404, 'MANIFEST_UNKNOWN');
});

t.test('a HEAD of an unknown manifest is 404 with no body', async (t) => {
  const { mirror } = await setup(t);
  const { res, body } = await get(mirror, '/v2/org/app/manifests/nope', { method: 'HEAD' });
  t.equal(res.status, 404);
  t.equal(body.length, 0);
  t.match(res.headers.get('content-type'), /^application\/json/);
});

t.test('tags are case-sensitive', async (t) => {
  const { up, mirror } = await setup(t);
  const lower = up.addImage('org/app', { tag: 'latest' });
  const upper = up.addImage('org/app', { tag: 'Latest', layers: [Buffer.from('other')] });
  t.equal((await get(mirror, '/v2/org/app/manifests/latest')).res.headers.get('docker-content-digest'), lower.digest);
  t.equal((await get(mirror, '/v2/org/app/manifests/Latest')).res.headers.get('docker-content-digest'), upper.digest);
});

t.test('deep repository names (org/team/app and deeper) work', async (t) => {
  const { up, mirror } = await setup(t);
  const img = up.addImage('org/team/sub/app', { tag: 'v1' });
  const { res, body } = await get(mirror, '/v2/org/team/sub/app/manifests/v1');
  t.equal(res.status, 200);
  t.same(body, img.bytes);
});

t.test('a manifest by digest whose upstream bytes do not match the digest is 502 and not cached', async (t) => {
  const { up, mirror } = await setup(t);
  const img = up.addImage('org/app');
  up.setManifestFault('org/app', img.digest, { kind: 'wrong-digest', times: 1 });
  const bad = await get(mirror, `/v2/org/app/manifests/${img.digest}`);
  await expectError(t, bad.res, bad.body, 502, 'UPSTREAM_ERROR');
  const good = await get(mirror, `/v2/org/app/manifests/${img.digest}`);
  t.equal(good.res.status, 200);
  t.same(good.body, img.bytes);
});

t.test("a manifest by tag whose bytes do not hash to upstream's Docker-Content-Digest is refused and not cached", async (t) => {
  const { up, mirror } = await setup(t);
  const img = up.addImage('org/app', { tag: 'v1' });
  up.setManifestFault('org/app', 'v1', { kind: 'wrong-digest', times: 1 });
  const bad = await get(mirror, '/v2/org/app/manifests/v1');
  t.equal(bad.res.status, 502, 'corrupted bytes are not served as the tag');
  t.not(bad.res.headers.get('docker-content-digest'), sha256(bad.body), 'no digest is announced for corrupted bytes');
  const good = await get(mirror, '/v2/org/app/manifests/v1');
  t.equal(good.res.status, 200);
  t.equal(good.res.headers.get('docker-content-digest'), img.digest, 'the tag maps to the real digest afterwards');
  t.same(good.body, img.bytes);
});

t.test('a manifest the upstream serves as text/html is 502 with an OCI error, never stored or served', async (t) => {
  // A captive portal, a login page or a misconfigured proxy answering 200 for the manifest URL.
  let html = true;
  const good = JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${'a'.repeat(64)}`, size: 2 },
    layers: [],
  });
  const page = '<html><body>Sign in to continue</body></html>';
  const up = await startRawUpstream((_req, res) => (html ? reply(res, 200, 'text/html', page) : reply(res, 200, OCI_MANIFEST, good)));
  t.teardown(() => up.close());
  const mirror = await startMirror({ upstreams: [{ namespace: 'raw.test', host: up.host }], defaultNamespace: 'raw.test' });
  t.teardown(() => mirror.close());
  const first = await get(mirror, '/v2/org/app/manifests/v1');
  await expectError(t, first.res, first.body, 502, 'UPSTREAM_ERROR');
  t.notMatch(first.body.toString(), 'Sign in', 'the page is not passed on');
  await mirror.settled();
  t.equal(await mirror.storage.getManifest(sha256(Buffer.from(page))), undefined, 'not stored');
  const again = await get(mirror, '/v2/org/app/manifests/v1');
  t.equal(again.res.status, 502, 'not served from a cache either');
  html = false;
  const fixed = await get(mirror, '/v2/org/app/manifests/v1');
  t.equal(fixed.res.status, 200, 'the real manifest once the upstream sends one');
  t.equal(fixed.body.toString(), good);
});

t.test('a manifest body of null is 502 with an OCI error, not a 500', async (t) => {
  const up = await startRawUpstream((_req, res) => reply(res, 200, OCI_MANIFEST, 'null'));
  t.teardown(() => up.close());
  const mirror = await startMirror({ upstreams: [{ namespace: 'raw.test', host: up.host }], defaultNamespace: 'raw.test' });
  t.teardown(() => mirror.close());
  const { res, body } = await get(mirror, '/v2/org/app/manifests/v1');
  await expectError(t, res, body, 502, 'UPSTREAM_ERROR');
});
