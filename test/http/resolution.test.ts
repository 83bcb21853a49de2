import t, { type Test } from 'tap';
import { startFixtureUpstream, type FixtureUpstream } from '../fixtures/upstream.js';
import { startMirror, type StartMirrorOptions, type TestMirror } from '../helpers/mirror.js';

async function fixture(t: Test): Promise<FixtureUpstream> {
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  return up;
}

async function mirrorOf(t: Test, options: StartMirrorOptions): Promise<TestMirror> {
  const m = await startMirror(options);
  t.teardown(() => m.close());
  return m;
}

async function get(mirror: TestMirror, path: string, headers: Record<string, string> = {}): Promise<{ res: Response; body: Buffer }> {
  const res = await fetch(`${mirror.url}${path}`, { headers });
  return { res, body: Buffer.from(await res.arrayBuffer()) };
}

function errorCode(body: Buffer): string | undefined {
  return (JSON.parse(body.toString()) as { errors: { code: string }[] }).errors[0]?.code;
}

t.test('?ns= selects the upstream, OCI-Namespace echoes it, and ns is not forwarded (containerd)', async (t) => {
  const a = await fixture(t);
  const b = await fixture(t);
  const img = b.addImage('org/app', { tag: 'v1' });
  const mirror = await mirrorOf(t, {
    upstreams: [
      { namespace: 'a.example', host: a.host },
      { namespace: 'b.example', host: b.host },
    ],
    defaultNamespace: 'a.example',
  });
  const { res, body } = await get(mirror, '/v2/org/app/manifests/v1?ns=b.example');
  t.equal(res.status, 200);
  t.same(body, img.bytes);
  t.equal(res.headers.get('oci-namespace'), 'b.example');
  t.equal(a.requests.length, 0, 'the default namespace was not asked');
  const sent = b.requests.find((r) => r.path === '/v2/org/app/manifests/v1');
  t.ok(sent);
  t.notOk(sent?.query.has('ns'));
});

t.test('?ns= works for blobs too and the blob is fetched from that namespace', async (t) => {
  const up = await fixture(t);
  const img = up.addImage('org/app', { tag: 'v1' });
  const mirror = await mirrorOf(t, { upstreams: [{ namespace: 'b.example', host: up.host }] });
  const { res } = await get(mirror, `/v2/org/app/blobs/${img.layerDigests[0]}?ns=b.example`);
  t.equal(res.status, 200);
  t.equal(res.headers.get('oci-namespace'), 'b.example');
  t.notOk(up.requests.some((r) => r.query.has('ns')));
});

t.test('the X-Registry header selects the upstream', async (t) => {
  const a = await fixture(t);
  const b = await fixture(t);
  const img = b.addImage('org/app', { tag: 'v1' });
  const mirror = await mirrorOf(t, {
    upstreams: [
      { namespace: 'a.example', host: a.host },
      { namespace: 'b.example', host: b.host },
    ],
    defaultNamespace: 'a.example',
  });
  const { res, body } = await get(mirror, '/v2/org/app/manifests/v1', { 'x-registry': 'b.example' });
  t.equal(res.status, 200);
  t.same(body, img.bytes);
  t.equal(a.requests.length, 0);
});

t.test('/v2/docker.io/library/x/... is docker.io library/x (cri-o / podman mirrors)', async (t) => {
  const up = await fixture(t);
  const img = up.addImage('library/x', { tag: 'latest' });
  const mirror = await mirrorOf(t, { upstreams: [{ namespace: 'docker.io', host: up.host }] });
  const { res, body } = await get(mirror, '/v2/docker.io/library/x/manifests/latest');
  t.equal(res.status, 200);
  t.same(body, img.bytes);
  t.ok(
    up.requests.some((r) => r.path === '/v2/library/x/manifests/latest'),
    'the prefix is not sent upstream',
  );
  const blob = await get(mirror, `/v2/docker.io/library/x/blobs/${img.configDigest}`);
  t.equal(blob.res.status, 200);
});

t.test('/v2/docker.io/x/... gets the library/ prefix', async (t) => {
  const up = await fixture(t);
  const img = up.addImage('library/x', { tag: 'latest' });
  const mirror = await mirrorOf(t, { upstreams: [{ namespace: 'docker.io', host: up.host }] });
  const { res, body } = await get(mirror, '/v2/docker.io/x/manifests/latest');
  t.equal(res.status, 200);
  t.same(body, img.bytes);
});

t.test('/v2/127.0.0.1:PORT/repo/... uses the namespace configured under that host name', async (t) => {
  const up = await fixture(t);
  const img = up.addImage('repo', { tag: 'v1' });
  const mirror = await mirrorOf(t, { upstreams: [{ namespace: up.host, host: up.host }] });
  const { res, body } = await get(mirror, `/v2/${up.host}/repo/manifests/v1`);
  t.equal(res.status, 200);
  t.same(body, img.bytes);
  t.ok(up.requests.some((r) => r.path === '/v2/repo/manifests/v1'));
  const tags = await get(mirror, `/v2/${up.host}/repo/tags/list`);
  t.same(JSON.parse(tags.body.toString()), { name: `${up.host}/repo`, tags: ['v1'] });
});

t.test('/v2/localhost:PORT/repo/... uses the namespace configured under localhost:PORT', async (t) => {
  const up = await fixture(t);
  const img = up.addImage('team/repo', { tag: 'v1' });
  const mirror = await mirrorOf(t, { upstreams: [{ namespace: `localhost:${up.port}`, host: up.host }] });
  const { res, body } = await get(mirror, `/v2/localhost:${up.port}/team/repo/manifests/v1`);
  t.equal(res.status, 200);
  t.same(body, img.bytes);
});

t.test('plain /v2/library/x goes to the default namespace (Docker registry-mirrors)', async (t) => {
  const up = await fixture(t);
  const img = up.addImage('library/x', { tag: 'latest' });
  const mirror = await mirrorOf(t, { upstreams: [{ namespace: 'docker.io', host: up.host }] });
  const { res, body } = await get(mirror, '/v2/library/x/manifests/latest');
  t.equal(res.status, 200);
  t.same(body, img.bytes);
  t.equal(res.headers.get('oci-namespace'), null, 'OCI-Namespace is only echoed for ns');
});

t.test('plain /v2/x on the docker.io default namespace asks upstream for library/x', async (t) => {
  const up = await fixture(t);
  const img = up.addImage('library/x', { tag: 'latest' });
  const mirror = await mirrorOf(t, { upstreams: [{ namespace: 'docker.io', host: up.host }] });
  const { res, body } = await get(mirror, '/v2/x/manifests/latest');
  t.equal(res.status, 200);
  t.same(body, img.bytes);
});

t.test('a configured default namespace other than docker.io serves plain paths', async (t) => {
  const up = await fixture(t);
  const img = up.addImage('app', { tag: 'v1' });
  const mirror = await mirrorOf(t, { upstreams: [{ namespace: 'ghcr.example', host: up.host }], defaultNamespace: 'ghcr.example' });
  const { res, body } = await get(mirror, '/v2/app/manifests/v1');
  t.equal(res.status, 200);
  t.same(body, img.bytes);
});

t.test('an unlisted namespace is 404 NAME_UNKNOWN when a config is given, and nothing is dialled', async (t) => {
  const up = await fixture(t);
  const mirror = await mirrorOf(t, { upstreams: [{ namespace: 'docker.io', host: up.host }] });
  for (const [path, headers] of [
    ['/v2/org/app/manifests/v1?ns=quay.io', {}],
    ['/v2/quay.io/org/app/manifests/v1', {}],
    ['/v2/org/app/manifests/v1', { 'x-registry': 'quay.io' }],
    [`/v2/quay.io/org/app/blobs/sha256:${'a'.repeat(64)}`, {}],
  ] as const) {
    const { res, body } = await get(mirror, path, headers);
    t.equal(res.status, 404, path);
    t.equal(errorCode(body), 'NAME_UNKNOWN', path);
  }
  t.equal(up.requests.length, 0);
});

t.test('without a config, a loopback or private literal namespace is 403 DENIED', async (t) => {
  const up = await fixture(t);
  up.addImage('repo', { tag: 'v1' });
  const mirror = await mirrorOf(t, {});
  for (const path of [
    `/v2/${up.host}/repo/manifests/v1`,
    `/v2/repo/manifests/v1?ns=${up.host}`,
    '/v2/10.0.0.1/repo/manifests/v1',
    `/v2/localhost:${up.port}/repo/manifests/v1`,
    '/v2/169.254.169.254/latest/manifests/v1',
  ]) {
    const { res, body } = await get(mirror, path);
    t.equal(res.status, 403, path);
    t.equal(errorCode(body), 'DENIED', path);
  }
  t.equal(up.requests.length, 0, 'the mirror never dialled the private address');
});

t.test('two namespaces with the same repository and tag keep separate tag mappings', async (t) => {
  const a = await fixture(t);
  const b = await fixture(t);
  const ia = a.addImage('org/app', { tag: 'v1', layers: [Buffer.from('from a')] });
  const ib = b.addImage('org/app', { tag: 'v1', layers: [Buffer.from('from b')] });
  const mirror = await mirrorOf(t, {
    upstreams: [
      { namespace: 'a.example', host: a.host },
      { namespace: 'b.example', host: b.host },
    ],
  });
  t.equal((await get(mirror, '/v2/a.example/org/app/manifests/v1')).res.headers.get('docker-content-digest'), ia.digest);
  t.equal((await get(mirror, '/v2/b.example/org/app/manifests/v1')).res.headers.get('docker-content-digest'), ib.digest);
  t.equal((await get(mirror, '/v2/org/app/manifests/v1?ns=a.example')).res.headers.get('docker-content-digest'), ia.digest);
});

t.test('an invalid ns is 400 NAME_INVALID for a blob request', async (t) => {
  const up = await fixture(t);
  const mirror = await mirrorOf(t, { upstreams: [{ namespace: 'docker.io', host: up.host }] });
  const { res, body } = await get(mirror, `/v2/org/app/blobs/sha256:${'a'.repeat(64)}?ns=${encodeURIComponent('bad host')}`);
  t.equal(res.status, 400);
  t.equal(errorCode(body), 'NAME_INVALID');
});

t.test('/v2/127.0.0.1_PORT/repo/... (the port written _PORT) is namespace 127.0.0.1:PORT and echoes it', async (t) => {
  const up = await fixture(t);
  const img = up.addImage('team/repo', { tag: 'v1' });
  const mirror = await mirrorOf(t, { upstreams: [{ namespace: up.host, host: up.host }] });
  const { res, body } = await get(mirror, `/v2/127.0.0.1_${up.port}/team/repo/manifests/v1`);
  t.equal(res.status, 200);
  t.same(body, img.bytes);
  t.equal(res.headers.get('oci-namespace'), up.host, 'OCI-Namespace is the canonical host:port');
  t.ok(
    up.requests.some((r) => r.path === '/v2/team/repo/manifests/v1'),
    'the prefix is not sent upstream',
  );
});

t.test('a blob fetched through /v2/host_PORT/... is cached for ?ns=host:PORT and /v2/host:PORT/... (one namespace)', async (t) => {
  const up = await fixture(t);
  const img = up.addImage('repo', { tag: 'v1' });
  const mirror = await mirrorOf(t, { upstreams: [{ namespace: up.host, host: up.host }] });
  const digest = img.layerDigests[0] as string;
  const first = await get(mirror, `/v2/127.0.0.1_${up.port}/repo/blobs/${digest}`);
  t.equal(first.res.status, 200);
  await mirror.settled();
  t.equal(up.blobGets(digest), 1);
  for (const path of [`/v2/repo/blobs/${digest}?ns=${up.host}`, `/v2/${up.host}/repo/blobs/${digest}`]) {
    const again = await get(mirror, path);
    t.equal(again.res.status, 200, path);
    t.same(again.body, first.body, path);
  }
  t.equal(up.blobGets(digest), 1, 'served from the one cache entry');
});

t.test('abuse: without a config, /v2/127.0.0.1_PORT/... and /v2/localhost_PORT/... are 403 DENIED, nothing dialled', async (t) => {
  const up = await fixture(t);
  up.addImage('repo', { tag: 'v1' });
  const mirror = await mirrorOf(t, {});
  for (const path of [
    `/v2/127.0.0.1_${up.port}/repo/manifests/v1`,
    `/v2/localhost_${up.port}/repo/manifests/v1`,
    '/v2/169.254.169.254_80/latest/manifests/v1',
  ]) {
    const { res, body } = await get(mirror, path);
    t.equal(res.status, 403, path);
    t.equal(errorCode(body), 'DENIED', path);
  }
  t.equal(up.requests.length, 0, 'the mirror never dialled the private address');
});

t.test('abuse: with a config, an unlisted /v2/127.0.0.1_PORT/... is 404 NAME_UNKNOWN, nothing dialled', async (t) => {
  const up = await fixture(t);
  const other = await fixture(t);
  up.addImage('repo', { tag: 'v1' });
  const mirror = await mirrorOf(t, { upstreams: [{ namespace: 'docker.io', host: other.host }] });
  const { res, body } = await get(mirror, `/v2/127.0.0.1_${up.port}/repo/manifests/v1`);
  t.equal(res.status, 404);
  t.equal(errorCode(body), 'NAME_UNKNOWN');
  t.equal(up.requests.length + other.requests.length, 0);
});
