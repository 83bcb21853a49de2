import t, { type Test } from 'tap';
import { reply, startRawUpstream } from '../fixtures/raw-upstream.js';
import { startFixtureUpstream, type FixtureUpstream } from '../fixtures/upstream.js';
import { startMirror, type TestMirror } from '../helpers/mirror.js';

const TAGS = ['1.0', '1.1', '2.0', 'Latest', 'latest', 'v1'];

async function setup(t: Test): Promise<{ up: FixtureUpstream; mirror: TestMirror }> {
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  // Added out of order: the answer must be lexical whatever the upstream's order.
  const img = up.addImage('org/app');
  for (const tag of ['v1', 'latest', '2.0', '1.0', 'Latest', '1.1']) up.setTag('org/app', tag, img.digest);
  const mirror = await startMirror({ upstreams: [{ namespace: 'fixture.test', host: up.host }], defaultNamespace: 'fixture.test' });
  t.teardown(() => mirror.close());
  return { up, mirror };
}

async function tags(
  mirror: TestMirror,
  path: string,
  init: RequestInit = {},
): Promise<{ res: Response; doc: { name: string; tags: string[] } }> {
  const res = await fetch(`${mirror.url}${path}`, init);
  return { res, doc: (await res.json()) as { name: string; tags: string[] } };
}

function nextLink(res: Response): string | undefined {
  const link = res.headers.get('link');
  if (!link) return undefined;
  const m = /^<([^>]+)>;\s*rel="next"$/.exec(link);
  return m?.[1];
}

t.test('tags/list returns {name, tags} with every tag in lexical order', async (t) => {
  const { mirror } = await setup(t);
  const { res, doc } = await tags(mirror, '/v2/org/app/tags/list');
  t.equal(res.status, 200);
  t.match(res.headers.get('content-type'), /^application\/json/);
  t.same(doc, { name: 'org/app', tags: TAGS });
  t.equal(res.headers.get('link'), null, 'no Link when nothing remains');
});

t.test('n limits the page and a Link header points at the next page on the mirror', async (t) => {
  const { mirror } = await setup(t);
  const { res, doc } = await tags(mirror, '/v2/org/app/tags/list?n=2');
  t.same(doc.tags, ['1.0', '1.1']);
  const next = nextLink(res);
  t.ok(next, 'Link rel="next"');
  const url = new URL(next ?? '', mirror.url);
  t.equal(url.pathname, '/v2/org/app/tags/list', "the mirror's own path, not the upstream's");
  t.equal(url.searchParams.get('n'), '2');
  t.equal(url.searchParams.get('last'), '1.1');
});

t.test('last is exclusive', async (t) => {
  const { mirror } = await setup(t);
  t.same((await tags(mirror, '/v2/org/app/tags/list?last=2.0')).doc.tags, ['Latest', 'latest', 'v1']);
  t.same((await tags(mirror, '/v2/org/app/tags/list?n=1&last=Latest')).doc.tags, ['latest']);
});

t.test('following the Link headers pages through every tag exactly once', async (t) => {
  const { mirror } = await setup(t);
  const seen: string[] = [];
  let path: string | undefined = '/v2/org/app/tags/list?n=4';
  for (let i = 0; path !== undefined && i < 10; i++) {
    const { res, doc } = await tags(mirror, path);
    seen.push(...doc.tags);
    path = nextLink(res);
  }
  t.same(seen, TAGS);
});

t.test('n larger than the tag count returns everything without a Link', async (t) => {
  const { mirror } = await setup(t);
  const { res, doc } = await tags(mirror, '/v2/org/app/tags/list?n=100');
  t.same(doc.tags, TAGS);
  t.equal(res.headers.get('link'), null);
});

t.test('n=0 returns an empty list', async (t) => {
  const { mirror } = await setup(t);
  const { res, doc } = await tags(mirror, '/v2/org/app/tags/list?n=0');
  t.equal(res.status, 200);
  t.same(doc.tags, []);
});

t.test('the Link keeps the client path prefix (cri-o) so the next page resolves the same namespace', async (t) => {
  const { mirror } = await setup(t);
  const { res, doc } = await tags(mirror, '/v2/fixture.test/org/app/tags/list?n=3');
  t.same(doc.tags, ['1.0', '1.1', '2.0']);
  const next = new URL(nextLink(res) ?? '', mirror.url);
  t.equal(next.pathname, '/v2/fixture.test/org/app/tags/list');
  const page2 = await tags(mirror, `${next.pathname}${next.search}`);
  t.same(page2.doc.tags, ['Latest', 'latest', 'v1']);
});

t.test('the Link keeps the ns parameter (containerd)', async (t) => {
  const { mirror } = await setup(t);
  const { res } = await tags(mirror, '/v2/org/app/tags/list?n=3&ns=fixture.test');
  const next = new URL(nextLink(res) ?? '', mirror.url);
  t.equal(next.searchParams.get('ns'), 'fixture.test');
});

t.test('tags of an unknown repository are 404 NAME_UNKNOWN', async (t) => {
  const { mirror } = await setup(t);
  const res = await fetch(`${mirror.url}/v2/org/none/tags/list`);
  t.equal(res.status, 404);
  t.equal(((await res.json()) as { errors: { code: string }[] }).errors[0]?.code, 'NAME_UNKNOWN');
});

t.test('an invalid last is 400 TAG_INVALID', async (t) => {
  const { mirror } = await setup(t);
  const res = await fetch(`${mirror.url}/v2/org/app/tags/list?last=${encodeURIComponent('.bad')}`);
  t.equal(res.status, 400);
  t.equal(((await res.json()) as { errors: { code: string }[] }).errors[0]?.code, 'TAG_INVALID');
});

t.test('an invalid n is a 400 with an OCI error body (a bad parameter, not a 405 method error)', async (t) => {
  const { mirror } = await setup(t);
  for (const n of ['-1', 'abc', '1.5']) {
    const res = await fetch(`${mirror.url}/v2/org/app/tags/list?n=${n}`);
    t.equal(res.status, 400, `n=${n}`);
    const doc = (await res.json()) as { errors: { code: string }[] };
    t.equal(doc.errors[0]?.code, 'PAGINATION_NUMBER_INVALID', `n=${n}`);
  }
});

t.test('an upstream tag list body of null (or a list, or bad JSON) is 502 with an OCI error, not a 500', async (t) => {
  for (const body of ['null', '[]', '{"name":']) {
    const up = await startRawUpstream((_req, res) => reply(res, 200, 'application/json', body));
    t.teardown(() => up.close());
    const mirror = await startMirror({ upstreams: [{ namespace: 'raw.test', host: up.host }], defaultNamespace: 'raw.test' });
    t.teardown(() => mirror.close());
    const res = await fetch(`${mirror.url}/v2/org/app/tags/list`);
    t.equal(res.status, 502, `${body}: 502`);
    t.match(res.headers.get('content-type'), /^application\/json/);
    t.equal(((await res.json()) as { errors: { code: string }[] }).errors[0]?.code, 'UPSTREAM_ERROR', `${body}: UPSTREAM_ERROR`);
  }
});
