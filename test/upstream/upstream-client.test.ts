import t from 'tap';
import { readFileSync } from 'node:fs';
import { readAll, rejection } from '../helpers/upstream-results.js';
import { defaultUpstreamSettings } from '../../src/config/upstreams.js';
import type { UpstreamConfig } from '../../src/config/types.js';
import { OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST } from '../../src/oci/media-types.js';
import { createUpstreamDispatcher } from '../../src/upstream/dispatcher.js';
import { UpstreamClient } from '../../src/upstream/upstream-client.js';
import { randomBytesSeeded, sha256 } from '../fixtures/content.js';
import { reply, startRawUpstream, type RawHandler, type RawUpstream } from '../fixtures/raw-upstream.js';
import { MEDIA_TYPES, startFixtureUpstream, type FixtureOptions, type FixtureUpstream } from '../fixtures/upstream.js';
import { startMirror } from '../helpers/mirror.js';

type T = { teardown(fn: () => unknown): void };

async function fixture(t: T, options?: FixtureOptions): Promise<FixtureUpstream> {
  const up = await startFixtureUpstream(options);
  t.teardown(() => up.close());
  return up;
}

async function raw(t: T, handler: RawHandler): Promise<RawUpstream> {
  const up = await startRawUpstream(handler);
  t.teardown(() => up.close());
  return up;
}

function client(t: T, up: FixtureUpstream | RawUpstream, overrides: Partial<UpstreamConfig> = {}): UpstreamClient {
  const config: UpstreamConfig = {
    ...defaultUpstreamSettings(),
    namespace: 'fixture.test',
    host: up.host,
    tls: false,
    explicit: true,
    ...overrides,
  };
  const dispatcher = createUpstreamDispatcher(config);
  t.teardown(() => dispatcher.close());
  return new UpstreamClient(config, dispatcher);
}

t.test('anonymous: a manifest by tag comes back with its exact bytes, digest and media type', async (t) => {
  const up = await fixture(t);
  const img = up.addImage('org/app', { tag: 'v1' });
  const m = await client(t, up).getManifest('org/app', 'v1');
  t.same(m, { digest: img.digest, mediaType: OCI_MANIFEST, bytes: img.bytes });
  t.equal(sha256(m.bytes), img.digest);
});

t.test('the manifest Accept sent upstream lists OCI and Docker manifest and index types', async (t) => {
  const up = await fixture(t);
  up.addImage('org/app', { tag: 'v1' });
  await client(t, up).getManifest('org/app', 'v1');
  const req = up.requests.find((r) => r.path === '/v2/org/app/manifests/v1');
  const accept = String(req?.headers.accept);
  for (const type of [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST]) t.ok(accept.includes(type), type);
});

t.test('a manifest by digest is verified against the requested digest', async (t) => {
  const up = await fixture(t);
  const img = up.addImage('org/app');
  up.setManifestFault('org/app', img.digest, { kind: 'wrong-digest' });
  const err = await rejection(client(t, up).getManifest('org/app', img.digest));
  t.equal(err.code, 'UPSTREAM_ERROR');
});

t.test('HEAD of a manifest reports digest, media type and size', async (t) => {
  const up = await fixture(t);
  const img = up.addImage('org/app', { tag: 'v1' });
  t.same(await client(t, up).headManifest('org/app', 'v1'), { digest: img.digest, mediaType: OCI_MANIFEST, size: img.bytes.length });
});

t.test('an unknown manifest is MANIFEST_UNKNOWN', async (t) => {
  const up = await fixture(t);
  t.equal((await rejection(client(t, up).getManifest('org/app', 'nope'))).code, 'MANIFEST_UNKNOWN');
  t.equal((await rejection(client(t, up).headManifest('org/app', 'nope'))).code, 'MANIFEST_UNKNOWN');
});

t.test('a blob streams with its size; HEAD reports the size; unknown blobs are BLOB_UNKNOWN / undefined', async (t) => {
  const up = await fixture(t);
  const bytes = randomBytesSeeded(100_000, 7);
  const digest = up.addBlob(bytes);
  const c = client(t, up);
  const blob = await c.getBlob('org/app', digest);
  t.equal(blob.size, bytes.length);
  t.same(await readAll(blob.body), bytes);
  t.same(await c.headBlob('org/app', digest), { size: bytes.length });
  const missing = sha256('missing');
  t.equal(await c.headBlob('org/app', missing), undefined);
  t.equal((await rejection(c.getBlob('org/app', missing))).code, 'BLOB_UNKNOWN');
});

t.test('tags come back with a flag when upstream announces a next page', async (t) => {
  const up = await fixture(t);
  for (const tag of ['a', 'b', 'c']) up.addImage('org/app', { tag });
  const c = client(t, up);
  t.same(await c.getTags('org/app', 2, undefined), { tags: ['a', 'b'], more: true });
  t.same(await c.getTags('org/app', 2, 'b'), { tags: ['c'], more: false });
  t.equal((await rejection(c.getTags('org/none', undefined, undefined))).code, 'NAME_UNKNOWN');
});

t.test('referrers pass through with OCI-Filters-Applied; a registry without the API gives undefined', async (t) => {
  const up = await fixture(t);
  const subject = up.addImage('org/app', { tag: 'v1' });
  up.addImage('org/app', {
    artifactType: 'application/vnd.example.sig',
    subject: { mediaType: OCI_MANIFEST, digest: subject.digest, size: subject.bytes.length },
  });
  const r = await client(t, up).getReferrers('org/app', subject.digest, 'application/vnd.example.sig');
  t.equal(r?.filtersApplied, 'artifactType');
  t.equal(r?.manifests.length, 1);

  const old = await fixture(t, { referrers: false });
  t.equal(await client(t, old).getReferrers('org/app', subject.digest, undefined), undefined);
});

t.test('basic auth: the challenge is answered with the configured credentials', async (t) => {
  const up = await fixture(t, { auth: { kind: 'basic', username: 'bob', password: 'pw' } });
  const img = up.addImage('org/app', { tag: 'v1' });
  const c = client(t, up, { username: 'bob', password: 'pw' });
  t.equal((await c.getManifest('org/app', 'v1')).digest, img.digest);
  const expected = `Basic ${Buffer.from('bob:pw').toString('base64')}`;
  t.ok(up.requests.some((r) => r.headers.authorization === expected));
  up.clearRequests();
  await c.getManifest('org/app', img.digest);
  t.equal(up.requests.length, 1, 'once basic is known, it is sent up front (no second 401)');
  t.equal(up.requests[0]?.headers.authorization, expected);
});

t.test('basic auth without credentials is DENIED', async (t) => {
  const up = await fixture(t, { auth: { kind: 'basic', username: 'bob', password: 'pw' } });
  up.addImage('org/app', { tag: 'v1' });
  t.equal((await rejection(client(t, up).getManifest('org/app', 'v1'))).code, 'DENIED');
});

t.test('bearer, anonymous: the token is fetched once and reused for the same scope', async (t) => {
  const up = await fixture(t, { auth: { kind: 'bearer' } });
  const img = up.addImage('org/app', { tag: 'v1' });
  const c = client(t, up);
  await c.getManifest('org/app', 'v1');
  await c.getManifest('org/app', img.digest);
  await readAll((await c.getBlob('org/app', img.configDigest)).body);
  t.equal(up.tokenRequests.length, 1);
  const tok = up.tokenRequests[0];
  t.equal(tok?.query.get('scope'), 'repository:org/app:pull');
  t.equal(tok?.query.get('service'), 'fixture');
  t.equal(tok?.headers.authorization, undefined, 'anonymous token request');
});

t.test('bearer: another repository (scope) gets its own token', async (t) => {
  const up = await fixture(t, { auth: { kind: 'bearer' } });
  up.addImage('org/a', { tag: 'v1' });
  up.addImage('org/b', { tag: 'v1' });
  const c = client(t, up);
  await c.getManifest('org/a', 'v1');
  await c.getManifest('org/b', 'v1');
  t.same(
    up.tokenRequests.map((r) => r.query.get('scope')),
    ['repository:org/a:pull', 'repository:org/b:pull'],
  );
});

t.test('bearer: a token the upstream no longer accepts is fetched again', async (t) => {
  const up = await fixture(t, { auth: { kind: 'bearer' } });
  const img = up.addImage('org/app', { tag: 'v1' });
  const c = client(t, up);
  await c.getManifest('org/app', 'v1');
  up.expireTokens();
  t.equal((await c.getManifest('org/app', 'v1')).digest, img.digest);
  t.equal(up.tokenRequests.length, 2);
});

t.test('bearer with username/password: the token request carries Basic credentials', async (t) => {
  const up = await fixture(t, { auth: { kind: 'bearer', username: 'robot', password: 'tok-pw' } });
  const img = up.addImage('org/app', { tag: 'v1' });
  t.equal((await client(t, up, { username: 'robot', password: 'tok-pw' }).getManifest('org/app', 'v1')).digest, img.digest);
  t.equal(up.tokenRequests[0]?.headers.authorization, `Basic ${Buffer.from('robot:tok-pw').toString('base64')}`);
});

t.test('bearer with wrong credentials is DENIED and the error never contains the password', async (t) => {
  const up = await fixture(t, { auth: { kind: 'bearer', username: 'robot', password: 'right' } });
  up.addImage('org/app', { tag: 'v1' });
  const err = await rejection(client(t, up, { username: 'robot', password: 'wrong-secret' }).getManifest('org/app', 'v1'));
  t.equal(err.code, 'DENIED');
  t.notMatch(JSON.stringify({ m: err.message, d: err.detail }), 'wrong-secret');
});

t.test('bearer: a token endpoint answering access_token (OAuth2 style) works', async (t) => {
  const up = await fixture(t, { auth: { kind: 'bearer', useAccessTokenField: true } });
  const img = up.addImage('org/app', { tag: 'v1' });
  t.equal((await client(t, up).getManifest('org/app', 'v1')).digest, img.digest);
});

t.test('a blob redirect to another host is followed without the Authorization header', async (t) => {
  const up = await fixture(t, { auth: { kind: 'bearer' }, redirectBlobs: true });
  const bytes = randomBytesSeeded(50_000, 3);
  const digest = up.addBlob(bytes);
  up.addImage('org/app', { tag: 'v1' });
  const blob = await client(t, up).getBlob('org/app', digest);
  t.same(await readAll(blob.body), bytes);
  t.equal(up.redirectBlobGets(digest), 1);
  t.equal(up.redirectSawAuthorization, false);
  t.ok(
    up.requests.some((r) => r.path.includes('/blobs/') && String(r.headers.authorization).startsWith('Bearer ')),
    'the registry itself got the token',
  );
});

t.test('a blob redirect to another host drops Basic credentials too', async (t) => {
  const up = await fixture(t, { auth: { kind: 'basic', username: 'u', password: 'p' }, redirectBlobs: true });
  const digest = up.addBlob(Buffer.from('redirected blob'));
  const blob = await client(t, up, { username: 'u', password: 'p' }).getBlob('org/app', digest);
  t.equal((await readAll(blob.body)).toString(), 'redirected blob');
  t.equal(up.redirectSawAuthorization, false);
});

t.test('the configured user_agent is sent on every request, the token request included', async (t) => {
  const up = await fixture(t, { auth: { kind: 'bearer' } });
  up.addImage('org/app', { tag: 'v1' });
  await client(t, up, { userAgent: 'my-mirror/9.9' }).getManifest('org/app', 'v1');
  t.ok(up.requests.length >= 3);
  for (const r of up.requests) t.equal(r.headers['user-agent'], 'my-mirror/9.9', `${r.method} ${r.path}`);
});

t.test('without user_agent, oci-registry/<version of package.json> is sent', async (t) => {
  const up = await fixture(t);
  up.addImage('org/app', { tag: 'v1' });
  await client(t, up).getManifest('org/app', 'v1');
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  t.equal(String(up.requests[0]?.headers['user-agent']), `oci-registry/${pkg.version}`);
});

t.test('the ns query parameter is never forwarded upstream by the mirror (manifest, blob, tags, referrers)', async (t) => {
  const up = await fixture(t);
  const img = up.addImage('org/app', { tag: 'v1' });
  const mirror = await startMirror({ upstreams: [{ namespace: 'fixture.test', host: up.host }] });
  t.teardown(() => mirror.close());
  for (const path of [
    '/v2/org/app/manifests/v1',
    `/v2/org/app/manifests/${img.digest}`,
    `/v2/org/app/blobs/${img.layerDigests[0]}`,
    '/v2/org/app/tags/list',
    `/v2/org/app/referrers/${img.digest}`,
  ]) {
    const res = await fetch(`${mirror.url}${path}?ns=fixture.test`);
    t.equal(res.status, 200, path);
    await res.arrayBuffer();
  }
  t.ok(up.requests.length >= 4, 'manifest (the by-digest GET is a cache hit), blob, tags, referrers');
  for (const r of up.requests) t.notOk(r.query.has('ns'), `${r.method} ${r.path}`);
});

t.test('an unreachable upstream is UPSTREAM_UNAVAILABLE', async (t) => {
  const up = await fixture(t);
  await up.stop();
  const err = await rejection(client(t, up).getManifest('org/app', 'v1'));
  t.equal(err.code, 'UPSTREAM_UNAVAILABLE');
});

t.test('429 is TOOMANYREQUESTS with the upstream Retry-After', async (t) => {
  const up = await fixture(t);
  up.setGlobalFault({ kind: 'status', status: 429, headers: { 'Retry-After': '42' } });
  const err = await rejection(client(t, up).getManifest('org/app', 'v1'));
  t.equal(err.code, 'TOOMANYREQUESTS');
  t.equal(err.retryAfter, 42);
});

t.test('500 is UPSTREAM_ERROR, 503 is UPSTREAM_UNAVAILABLE', async (t) => {
  const up = await fixture(t);
  up.setGlobalFault({ kind: 'status', status: 500 });
  t.equal((await rejection(client(t, up).getManifest('org/app', 'v1'))).code, 'UPSTREAM_ERROR');
  up.setGlobalFault({ kind: 'status', status: 503 });
  t.equal((await rejection(client(t, up).getManifest('org/app', 'v1'))).code, 'UPSTREAM_UNAVAILABLE');
});

t.test('an upstream that does not answer within read_timeout is UPSTREAM_TIMEOUT', async (t) => {
  const up = await fixture(t);
  up.addImage('org/app', { tag: 'v1' });
  up.setGlobalFault({ kind: 'stall', ms: 3000 });
  const started = Date.now();
  const err = await rejection(client(t, up, { readTimeoutMs: 300 }).getManifest('org/app', 'v1'));
  t.equal(err.code, 'UPSTREAM_TIMEOUT');
  t.ok(Date.now() - started < 2500, 'gave up near the read timeout');
});

t.test('an implicit (unconfigured) upstream on a loopback address is refused at connect time', async (t) => {
  const up = await fixture(t);
  up.addImage('org/app', { tag: 'v1' });
  const err = await rejection(client(t, up, { explicit: false }).getManifest('org/app', 'v1'));
  t.equal(err.code, 'DENIED');
  t.equal(up.requests.length, 0, 'nothing was sent');
});

t.test('the fixture media type constants agree with src/oci', async (t) => {
  t.equal(MEDIA_TYPES.ociManifest, OCI_MANIFEST);
  t.equal(MEDIA_TYPES.ociIndex, OCI_INDEX);
});

// ---- token realms on other hosts (the realm is named by whoever answers for the upstream) ----

t.test('bearer: credentials are not sent to a token realm on another host; the denial says why', async (t) => {
  const up = await fixture(t, { auth: { kind: 'bearer', username: 'robot', password: 'realm-secret' }, tokenRealmHost: 'localhost' });
  up.addImage('org/app', { tag: 'v1' });
  const err = await rejection(client(t, up, { username: 'robot', password: 'realm-secret' }).getManifest('org/app', 'v1'));
  t.equal(up.tokenRequests.length, 1, 'the token was asked for');
  t.equal(up.tokenRequests[0]?.headers.authorization, undefined, 'anonymously');
  t.equal(err.code, 'DENIED');
  t.match(err.message, /token realm localhost:\d+.*token_realm_hosts/);
  t.notMatch(JSON.stringify({ m: err.message, d: err.detail }), 'realm-secret');
});

t.test('bearer: a realm host listed in token_realm_hosts gets the credentials', async (t) => {
  const up = await fixture(t, { auth: { kind: 'bearer', username: 'robot', password: 'pw' }, tokenRealmHost: 'localhost' });
  const img = up.addImage('org/app', { tag: 'v1' });
  const c = client(t, up, { username: 'robot', password: 'pw', tokenRealmHosts: ['localhost'] });
  t.equal((await c.getManifest('org/app', 'v1')).digest, img.digest);
  t.equal(up.tokenRequests[0]?.headers.authorization, `Basic ${Buffer.from('robot:pw').toString('base64')}`);
});

t.test('bearer: a listed realm host with another port does not get the credentials', async (t) => {
  const up = await fixture(t, { auth: { kind: 'bearer', username: 'robot', password: 'pw' }, tokenRealmHost: 'localhost' });
  up.addImage('org/app', { tag: 'v1' });
  const c = client(t, up, { username: 'robot', password: 'pw', tokenRealmHosts: [`localhost:${up.port + 1}`] });
  t.equal((await rejection(c.getManifest('org/app', 'v1'))).code, 'DENIED');
  t.equal(up.tokenRequests[0]?.headers.authorization, undefined);
});

t.test('bearer, anonymous: a token realm on another host works (nothing to withhold)', async (t) => {
  const up = await fixture(t, { auth: { kind: 'bearer' }, tokenRealmHost: 'localhost' });
  const img = up.addImage('org/app', { tag: 'v1' });
  t.equal((await client(t, up).getManifest('org/app', 'v1')).digest, img.digest);
});

t.test(
  'bearer: a denial after an anonymous token from another host names token_realm_hosts only when there were credentials to withhold',
  async (t) => {
    const up = await raw(t, (req, res, url) => {
      if (url.pathname === '/token') return reply(res, 200, 'application/json', '{"token":"anonymous"}');
      reply(res, 401, 'application/json', '{"errors":[]}', {
        'www-authenticate': `Bearer realm="http://localhost:${req.socket.localPort}/token",service="raw"`,
      });
    });
    const anonymous = await rejection(client(t, up).getManifest('org/app', 'v1'));
    t.equal(anonymous.code, 'DENIED');
    t.notMatch(anonymous.message, /token_realm_hosts|credentials to/, 'no credentials: nothing was withheld');
    const withCreds = await rejection(client(t, up, { username: 'u', password: 'p' }).getManifest('org/app', 'v1'));
    t.equal(withCreds.code, 'DENIED');
    t.match(withCreds.message, /token_realm_hosts/);
  },
);

// ---- what upstreams send that is not what it should be: 502 UPSTREAM_ERROR, never a crash ----

const OCI_BODY = JSON.stringify({
  schemaVersion: 2,
  mediaType: OCI_MANIFEST,
  config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${'a'.repeat(64)}`, size: 2 },
  layers: [],
});

/** An upstream answering every manifest GET with this Content-Type (none when undefined) and body. */
function manifestUpstream(t: T, contentType: string | undefined, body: string): Promise<RawUpstream> {
  return raw(t, (_req, res) => reply(res, 200, contentType, body));
}

t.test('a manifest served as text/html (a login page, a proxy error) is UPSTREAM_ERROR', async (t) => {
  const up = await manifestUpstream(t, 'text/html; charset=utf-8', '<html><body>Please log in</body></html>');
  const err = await rejection(client(t, up).getManifest('org/app', 'v1'));
  t.equal(err.code, 'UPSTREAM_ERROR');
  t.match(err.message, /text\/html/);
});

t.test('a manifest served as text/html is refused even when its body is a valid manifest', async (t) => {
  const up = await manifestUpstream(t, 'text/html', OCI_BODY);
  t.equal((await rejection(client(t, up).getManifest('org/app', 'v1'))).code, 'UPSTREAM_ERROR');
});

t.test('a manifest type we never asked for (an image config, a layer) is UPSTREAM_ERROR', async (t) => {
  for (const type of ['application/vnd.oci.image.config.v1+json', 'application/vnd.oci.image.layer.v1.tar+gzip']) {
    const up = await manifestUpstream(t, type, '{}');
    t.equal((await rejection(client(t, up).getManifest('org/app', 'v1'))).code, 'UPSTREAM_ERROR', type);
  }
});

t.test('a manifest body of null, a list, or not JSON is UPSTREAM_ERROR whatever its Content-Type', async (t) => {
  for (const body of ['null', '[]', '"x"', '{not json', '']) {
    const up = await manifestUpstream(t, OCI_MANIFEST, body);
    t.equal((await rejection(client(t, up).getManifest('org/app', 'v1'))).code, 'UPSTREAM_ERROR', JSON.stringify(body));
  }
});

t.test('application/json or no Content-Type: the body decides (its mediaType, schema1, or the OCI shape)', async (t) => {
  const schema1 = JSON.stringify({ schemaVersion: 1, name: 'org/app', tag: 'v1', fsLayers: [], history: [] });
  const signed = JSON.stringify({ schemaVersion: 1, name: 'org/app', tag: 'v1', fsLayers: [], history: [], signatures: [{}] });
  const dockerV2 = JSON.stringify({ schemaVersion: 2, mediaType: DOCKER_MANIFEST, config: {}, layers: [] });
  const ociIndex = JSON.stringify({ schemaVersion: 2, manifests: [] });
  const ociManifest = JSON.stringify({ schemaVersion: 2, config: {}, layers: [] });
  for (const [contentType, body, expected] of [
    ['application/json', schema1, 'application/vnd.docker.distribution.manifest.v1+json'],
    ['application/json; charset=utf-8', signed, 'application/vnd.docker.distribution.manifest.v1+prettyjws'],
    [undefined, dockerV2, DOCKER_MANIFEST],
    ['text/plain', ociIndex, OCI_INDEX],
    ['application/octet-stream', ociManifest, OCI_MANIFEST],
  ] as const) {
    const up = await manifestUpstream(t, contentType, body);
    t.equal((await client(t, up).getManifest('org/app', 'v1')).mediaType, expected, `${contentType ?? 'no Content-Type'}: ${expected}`);
  }
});

t.test('application/json whose body names no manifest type, or has no manifest shape, is UPSTREAM_ERROR', async (t) => {
  for (const body of [
    JSON.stringify({ mediaType: 'text/html' }),
    JSON.stringify({ hello: 'world' }),
    JSON.stringify({ schemaVersion: 2 }),
  ]) {
    const up = await manifestUpstream(t, 'application/json', body);
    t.equal((await rejection(client(t, up).getManifest('org/app', 'v1'))).code, 'UPSTREAM_ERROR', body);
  }
});

t.test('a tag list body of null, a list or bad JSON is UPSTREAM_ERROR; "tags": null is an empty list', async (t) => {
  for (const body of ['null', '[]', '{"tags":', '{"name":"org/app","tags":"v1"}']) {
    const up = await raw(t, (_req, res) => reply(res, 200, 'application/json', body));
    t.equal((await rejection(client(t, up).getTags('org/app', undefined, undefined))).code, 'UPSTREAM_ERROR', body);
  }
  const empty = await raw(t, (_req, res) => reply(res, 200, 'application/json', '{"name":"org/app","tags":null}'));
  t.same(await client(t, empty).getTags('org/app', undefined, undefined), { tags: [], more: false });
});

t.test('a referrers body of null, without a manifests list, or bad JSON is never passed through: the API counts as absent', async (t) => {
  // Some registries answer unknown paths with 200 and a page; the proxy then falls back to the tag schema.
  for (const body of ['null', '{}', '{"manifests":{}}', 'not json']) {
    const up = await raw(t, (_req, res) => reply(res, 200, OCI_INDEX, body));
    t.equal(await client(t, up).getReferrers('org/app', `sha256:${'b'.repeat(64)}`, undefined), undefined, body);
  }
});

/** A registry that challenges for a Bearer token, and a token endpoint answering `tokenBody`. */
function tokenUpstream(t: T, tokenBody: string): Promise<RawUpstream> {
  let self = '';
  const p = raw(t, (req, res, url) => {
    if (url.pathname === '/token') return reply(res, 200, 'application/json', tokenBody);
    if (req.headers.authorization) return reply(res, 200, OCI_MANIFEST, OCI_BODY);
    reply(res, 401, 'application/json', '{"errors":[]}', { 'www-authenticate': `Bearer realm="http://${self}/token",service="raw"` });
  });
  return p.then((up) => ((self = up.host), up));
}

t.test('a token response of null, a list, bad JSON or without a token is UPSTREAM_ERROR', async (t) => {
  for (const body of ['null', '[]', '{bad', '{}', '{"token":42}']) {
    const up = await tokenUpstream(t, body);
    const err = await rejection(client(t, up).getManifest('org/app', 'v1'));
    t.equal(err.code, 'UPSTREAM_ERROR', body);
    t.notMatch(JSON.stringify({ m: err.message, d: err.detail }), /Cannot read|TypeError|properties/, `${body}: no internal error text`);
  }
});

t.test('a token that could not be sent in a header (spaces, control characters, huge) is UPSTREAM_ERROR', async (t) => {
  for (const token of ['two words', 'line\r\nX-Injected: 1', 'x'.repeat(40_000)]) {
    const up = await tokenUpstream(t, JSON.stringify({ token }));
    t.equal((await rejection(client(t, up).getManifest('org/app', 'v1'))).code, 'UPSTREAM_ERROR', token.slice(0, 20));
    t.notOk(
      up.requests.some((r) => r.headers['x-injected'] !== undefined),
      'nothing injected',
    );
  }
});

t.test('a blob whose Content-Length exceeds maxBytes is refused before its body is read', async (t) => {
  const up = await fixture(t);
  const digest = up.addBlob(randomBytesSeeded(1000, 4));
  up.setBlobFault(digest, { kind: 'content-length', value: 1e15 });
  const started = performance.now();
  const err = await rejection(client(t, up, { readTimeoutMs: 5000 }).getBlob('org/app', digest, { maxBytes: 1 << 20 }));
  t.equal(err.code, 'UPSTREAM_ERROR');
  t.match(err.detail, { size: 1e15, maxBytes: 1 << 20 });
  t.ok(performance.now() - started < 2000, 'at once, not after a read timeout');
});

t.test('a manifest announcing more than 4 MiB is refused at once, without waiting for its body', async (t) => {
  const up = await fixture(t);
  const img = up.addImage('org/app', { tag: 'v1' });
  up.setManifestFault('org/app', img.digest, { kind: 'content-length', value: 5 * 1024 * 1024 });
  const started = performance.now();
  const err = await rejection(client(t, up, { readTimeoutMs: 5000 }).getManifest('org/app', img.digest));
  t.equal(err.code, 'UPSTREAM_ERROR');
  t.match(err.message, /exceeds/);
  t.ok(performance.now() - started < 2000, `at once (${Math.round(performance.now() - started)} ms), not after the read timeout`);
});
