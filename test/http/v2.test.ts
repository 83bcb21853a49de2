import t, { type Test } from 'tap';
import { startFixtureUpstream, type FixtureUpstream } from '../fixtures/upstream.js';
import { startMirror, type TestMirror } from '../helpers/mirror.js';

async function setup(t: Test): Promise<{ up: FixtureUpstream; mirror: TestMirror }> {
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  const mirror = await startMirror({ upstreams: [{ namespace: 'fixture.test', host: up.host }], defaultNamespace: 'fixture.test' });
  t.teardown(() => mirror.close());
  return { up, mirror };
}

t.test('GET /v2/ answers 200 {} with Docker-Distribution-API-Version and JSON content type', async (t) => {
  const { mirror } = await setup(t);
  const res = await fetch(`${mirror.url}/v2/`);
  t.equal(res.status, 200);
  t.equal(res.headers.get('docker-distribution-api-version'), 'registry/2.0');
  t.match(res.headers.get('content-type'), /^application\/json/);
  t.same(await res.json(), {});
});

t.test('GET /v2 without the trailing slash answers the same', async (t) => {
  const { mirror } = await setup(t);
  const res = await fetch(`${mirror.url}/v2`);
  t.equal(res.status, 200);
  t.same(await res.json(), {});
});

t.test('HEAD /v2/ answers 200 with no body', async (t) => {
  const { mirror } = await setup(t);
  const res = await fetch(`${mirror.url}/v2/`, { method: 'HEAD' });
  t.equal(res.status, 200);
  t.equal(res.headers.get('docker-distribution-api-version'), 'registry/2.0');
  t.equal((await res.arrayBuffer()).byteLength, 0);
});

t.test('/v2/ never contacts an upstream, even when every upstream is down', async (t) => {
  const { up, mirror } = await setup(t);
  await fetch(`${mirror.url}/v2/`).then((r) => r.arrayBuffer());
  t.equal(up.requests.length, 0);
  await up.stop();
  const res = await fetch(`${mirror.url}/v2/`);
  t.equal(res.status, 200);
  await res.arrayBuffer();
});

t.test('/v2/ with an ns parameter still answers locally', async (t) => {
  const { up, mirror } = await setup(t);
  const res = await fetch(`${mirror.url}/v2/?ns=fixture.test`);
  t.equal(res.status, 200);
  await res.arrayBuffer();
  t.equal(up.requests.length, 0);
});

t.test('every /v2 response carries Docker-Distribution-API-Version, errors included', async (t) => {
  const { up, mirror } = await setup(t);
  const img = up.addImage('org/app', { tag: 'v1' });
  for (const path of [
    '/v2/org/app/manifests/v1',
    '/v2/org/app/manifests/missing',
    `/v2/org/app/blobs/${img.configDigest}`,
    '/v2/org/app/blobs/sha256:nope',
    '/v2/org/app/tags/list',
    '/v2/no/such/endpoint',
  ]) {
    const res = await fetch(`${mirror.url}${path}`);
    t.equal(res.headers.get('docker-distribution-api-version'), 'registry/2.0', `${res.status} ${path}`);
    await res.arrayBuffer();
  }
  // A cached blob goes out through the pooled-buffer sender, which writes the headers itself.
  await mirror.settled();
  const cached = await fetch(`${mirror.url}/v2/org/app/blobs/${img.configDigest}`);
  t.equal(cached.headers.get('docker-distribution-api-version'), 'registry/2.0', 'cached blob');
  await cached.arrayBuffer();
});

t.test('write methods on /v2/ are 405 UNSUPPORTED with Allow: GET, HEAD', async (t) => {
  const { mirror } = await setup(t);
  for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
    const res = await fetch(`${mirror.url}/v2/`, { method });
    t.equal(res.status, 405, method);
    t.equal(res.headers.get('allow'), 'GET, HEAD', method);
    t.equal(((await res.json()) as { errors: { code: string }[] }).errors[0]?.code, 'UNSUPPORTED');
  }
});
