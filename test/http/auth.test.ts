import t, { type Test } from 'tap';
import { randomBytesSeeded, sha256 } from '../fixtures/content.js';
import { reply, startRawUpstream } from '../fixtures/raw-upstream.js';
import { startFixtureUpstream, type FixtureOptions, type FixtureUpstream } from '../fixtures/upstream.js';
import { startMirror, type TestMirror, type TestUpstream } from '../helpers/mirror.js';

async function setup(
  t: Test,
  fixture: FixtureOptions,
  upstream: Partial<TestUpstream> = {},
): Promise<{ up: FixtureUpstream; mirror: TestMirror }> {
  const up = await startFixtureUpstream(fixture);
  t.teardown(() => up.close());
  const mirror = await startMirror({
    upstreams: [{ namespace: 'fixture.test', host: up.host, ...upstream }],
    defaultNamespace: 'fixture.test',
  });
  t.teardown(() => mirror.close());
  return { up, mirror };
}

async function get(mirror: TestMirror, path: string): Promise<{ res: Response; body: Buffer }> {
  const res = await fetch(`${mirror.url}${path}`);
  return { res, body: Buffer.from(await res.arrayBuffer()) };
}

/** Pulls the image the way a client does: manifest by tag, config and layer blobs. */
async function pull(t: Test, mirror: TestMirror, repo: string, tag: string): Promise<void> {
  const m = await get(mirror, `/v2/${repo}/manifests/${tag}`);
  t.equal(m.res.status, 200, 'manifest');
  const doc = JSON.parse(m.body.toString()) as { config: { digest: string }; layers: { digest: string }[] };
  for (const d of [doc.config.digest, ...doc.layers.map((l) => l.digest)]) {
    const b = await get(mirror, `/v2/${repo}/blobs/${d}`);
    t.equal(b.res.status, 200, `blob ${d.slice(0, 19)}`);
    t.equal(sha256(b.body), d);
  }
}

t.test('basic auth upstream: the mirror pulls with the configured username and password', async (t) => {
  const { up, mirror } = await setup(
    t,
    { auth: { kind: 'basic', username: 'mirror', password: 'pw1' } },
    { username: 'mirror', password: 'pw1' },
  );
  up.addImage('org/app', { tag: 'v1', layers: [randomBytesSeeded(20_000, 1)] });
  await pull(t, mirror, 'org/app', 'v1');
});

t.test('bearer upstream: the mirror gets a token with username/password at the token endpoint', async (t) => {
  const { up, mirror } = await setup(
    t,
    { auth: { kind: 'bearer', username: 'robot', password: 'tokpw' } },
    { username: 'robot', password: 'tokpw' },
  );
  up.addImage('org/app', { tag: 'v1' });
  await pull(t, mirror, 'org/app', 'v1');
  t.equal(up.tokenRequests.length, 1, 'one token for the whole pull');
  t.equal(up.tokenRequests[0]?.headers.authorization, `Basic ${Buffer.from('robot:tokpw').toString('base64')}`);
});

t.test('anonymous bearer upstream: the mirror gets an anonymous token', async (t) => {
  const { up, mirror } = await setup(t, { auth: { kind: 'bearer' } });
  up.addImage('org/app', { tag: 'v1' });
  await pull(t, mirror, 'org/app', 'v1');
  t.equal(up.tokenRequests.length, 1);
  t.equal(up.tokenRequests[0]?.headers.authorization, undefined);
});

t.test('bearer upstream with redirected blobs: the CDN host never sees the token', async (t) => {
  const { up, mirror } = await setup(t, { auth: { kind: 'bearer' }, redirectBlobs: true });
  up.addImage('org/app', { tag: 'v1', layers: [randomBytesSeeded(40_000, 2)] });
  await pull(t, mirror, 'org/app', 'v1');
  t.ok(up.redirectRequests.length >= 2);
  t.equal(up.redirectSawAuthorization, false);
});

t.test('wrong upstream credentials are 403 DENIED and the response never contains them', async (t) => {
  const { up, mirror } = await setup(
    t,
    { auth: { kind: 'bearer', username: 'robot', password: 'right' } },
    { username: 'robot', password: 'Wr0ngPa55' },
  );
  up.addImage('org/app', { tag: 'v1' });
  const { res, body } = await get(mirror, '/v2/org/app/manifests/v1');
  t.equal(res.status, 403);
  t.match(res.headers.get('content-type'), /^application\/json/);
  t.equal((JSON.parse(body.toString()) as { errors: { code: string }[] }).errors[0]?.code, 'DENIED');
  const text = `${body.toString()} ${JSON.stringify([...res.headers])}`;
  t.notMatch(text, 'Wr0ngPa55');
  t.notMatch(text, Buffer.from('robot:Wr0ngPa55').toString('base64'));
});

t.test('a basic auth upstream without configured credentials is 403 DENIED, not a 401 challenge passed through', async (t) => {
  const { up, mirror } = await setup(t, { auth: { kind: 'basic', username: 'u', password: 'p' } });
  up.addImage('org/app', { tag: 'v1' });
  const { res } = await get(mirror, '/v2/org/app/manifests/v1');
  t.equal(res.status, 403);
  t.equal(res.headers.get('www-authenticate'), null, 'the upstream challenge is not relayed to the client');
});

t.test('a token realm on another host than the upstream never receives its credentials; the 403 names token_realm_hosts', async (t) => {
  // Whoever answers for the upstream names the realm: credentials would otherwise go wherever it says.
  const { up, mirror } = await setup(
    t,
    { auth: { kind: 'bearer', username: 'robot', password: 'R3almPw' }, tokenRealmHost: 'localhost' },
    { username: 'robot', password: 'R3almPw' },
  );
  up.addImage('org/app', { tag: 'v1' });
  const { res, body } = await get(mirror, '/v2/org/app/manifests/v1');
  t.equal(res.status, 403);
  const doc = JSON.parse(body.toString()) as { errors: { code: string; message: string }[] };
  t.equal(doc.errors[0]?.code, 'DENIED');
  t.match(doc.errors[0]?.message, /token_realm_hosts/);
  t.ok(up.tokenRequests.length > 0, 'a token was asked for');
  for (const r of up.tokenRequests) t.equal(r.headers.authorization, undefined, 'anonymously');
  t.notMatch(body.toString(), 'R3almPw');
});

t.test('with token_realm_hosts listing the realm host, the mirror pulls with its credentials', async (t) => {
  const { up, mirror } = await setup(
    t,
    { auth: { kind: 'bearer', username: 'robot', password: 'pw' }, tokenRealmHost: 'localhost' },
    { username: 'robot', password: 'pw', tokenRealmHosts: ['localhost'] },
  );
  up.addImage('org/app', { tag: 'v1' });
  await pull(t, mirror, 'org/app', 'v1');
  t.equal(up.tokenRequests[0]?.headers.authorization, `Basic ${Buffer.from('robot:pw').toString('base64')}`);
});

t.test('a token response of null is 502 with an OCI error, not a 500', async (t) => {
  let self = '';
  const up = await startRawUpstream((req, res, url) => {
    if (url.pathname === '/token') return reply(res, 200, 'application/json', 'null');
    reply(res, 401, 'application/json', '{"errors":[]}', { 'www-authenticate': `Bearer realm="http://${self}/token",service="raw"` });
  });
  self = up.host;
  t.teardown(() => up.close());
  const mirror = await startMirror({ upstreams: [{ namespace: 'raw.test', host: up.host }], defaultNamespace: 'raw.test' });
  t.teardown(() => mirror.close());
  const { res, body } = await get(mirror, '/v2/org/app/manifests/v1');
  t.equal(res.status, 502);
  t.equal((JSON.parse(body.toString()) as { errors: { code: string }[] }).errors[0]?.code, 'UPSTREAM_ERROR');
});
