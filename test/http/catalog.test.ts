/**
 * `GET /v2/_catalog?n=&last=`: the repositories the mirror has cached (those with a tag record), as
 * clients name them: `<namespace>/<repository>`, or the bare repository for the default namespace.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import t, { type Test } from 'tap';
import { sha256 } from '../fixtures/content.js';
import { MEDIA_TYPES, startFixtureUpstream, type FixtureUpstream } from '../fixtures/upstream.js';
import { startMirror, type TestMirror, type TestUpstream } from '../helpers/mirror.js';

const ACCEPT = `${MEDIA_TYPES.ociManifest}, ${MEDIA_TYPES.ociIndex}`;
const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;

async function setup(t: Test, extra: Partial<TestUpstream> = {}): Promise<{ up: FixtureUpstream; m: TestMirror }> {
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  // One fixture behind two namespaces: the default one and another.
  const m = await startMirror({
    upstreams: [
      { namespace: 'fixture.test', host: up.host },
      { namespace: 'other.test', host: up.host, ...extra },
    ],
    defaultNamespace: 'fixture.test',
  });
  t.teardown(() => m.close());
  return { up, m };
}

/** Tag records straight into the cache (what a pull by tag leaves). */
async function cacheTags(m: TestMirror, names: Array<[namespace: string, repository: string]>): Promise<void> {
  const record = { digest: sha256('x'), mediaType: MEDIA_TYPES.ociManifest, size: 1, checkedAt: new Date() };
  for (const [namespace, repository] of names) await m.storage.putTag({ namespace, repository }, 'latest', record);
}

async function catalog(
  m: TestMirror,
  query = '',
  headers: Record<string, string> = {},
): Promise<{ res: Response; repositories: string[] }> {
  const res = await fetch(`${m.url}/v2/_catalog${query}`, { headers });
  const doc = (await res.json()) as { repositories?: string[] };
  return { res, repositories: doc.repositories ?? [] };
}

function nextLink(res: Response): string | undefined {
  const m = /^<([^>]+)>;\s*rel="next"$/.exec(res.headers.get('link') ?? '');
  return m?.[1];
}

t.test('lists pulled repositories: bare for the default namespace, namespace/repository otherwise, lexical', async (t) => {
  const { up, m } = await setup(t);
  for (const repo of ['org/zeta', 'org/app', 'team/tool']) up.addImage(repo, { tag: 'v1' });
  for (const path of ['org/zeta/manifests/v1', 'org/app/manifests/v1', 'team/tool/manifests/v1?ns=other.test']) {
    t.equal((await fetch(`${m.url}/v2/${path}`, { headers: { accept: ACCEPT } })).status, 200, `pulled ${path}`);
  }
  const { res, repositories } = await catalog(m);
  t.equal(res.status, 200);
  t.match(res.headers.get('content-type'), /^application\/json/);
  t.same(repositories, ['org/app', 'org/zeta', 'other.test/team/tool']);
  t.equal(res.headers.get('link'), null, 'no Link when everything fits');
});

t.test('the names it lists can be pulled by that name', async (t) => {
  const { up, m } = await setup(t);
  const img = up.addImage('team/tool', { tag: 'v1' });
  await fetch(`${m.url}/v2/team/tool/manifests/v1?ns=other.test`, { headers: { accept: ACCEPT } }).then((r) => r.arrayBuffer());
  const [name] = (await catalog(m)).repositories;
  t.equal(name, 'other.test/team/tool');
  const res = await fetch(`${m.url}/v2/${name}/manifests/v1`, { headers: { accept: ACCEPT } });
  t.equal(res.status, 200);
  t.equal(res.headers.get('docker-content-digest'), img.digest);
});

t.test('an empty cache lists no repositories', async (t) => {
  const { m } = await setup(t);
  const { res, repositories } = await catalog(m);
  t.equal(res.status, 200);
  t.same(repositories, []);
});

t.test('never contacts an upstream', async (t) => {
  const { up, m } = await setup(t);
  await cacheTags(m, [['fixture.test', 'a']]);
  await catalog(m);
  t.equal(up.countRequests({}), 0);
});

t.test('n limits the page and a Link header points at the next page', async (t) => {
  const { m } = await setup(t);
  await cacheTags(m, [
    ['fixture.test', 'c'],
    ['fixture.test', 'a'],
    ['other.test', 'x/y'],
    ['fixture.test', 'b'],
  ]);
  const { res, repositories } = await catalog(m, '?n=2');
  t.same(repositories, ['a', 'b']);
  const next = new URL(nextLink(res) ?? '', m.url);
  t.equal(next.pathname, '/v2/_catalog');
  t.equal(next.searchParams.get('n'), '2');
  t.equal(next.searchParams.get('last'), 'b');
});

t.test('following the Link headers pages through every name exactly once', async (t) => {
  const { m } = await setup(t);
  const names: Array<[string, string]> = [];
  for (let i = 0; i < 23; i++) names.push([i % 3 === 0 ? 'other.test' : 'fixture.test', `repo-${String(i).padStart(2, '0')}/app`]);
  await cacheTags(m, names);
  const seen: string[] = [];
  let path: string | undefined = '?n=5';
  let pages = 0;
  while (path !== undefined && pages < 20) {
    const { res, repositories } = await catalog(m, path.startsWith('/v2/_catalog') ? path.slice('/v2/_catalog'.length) : path);
    seen.push(...repositories);
    const next = nextLink(res);
    path = next;
    pages++;
  }
  t.equal(pages, 5, 'five pages of five or fewer');
  t.same(seen, (await catalog(m)).repositories, 'the same names as one unpaged answer');
  t.equal(new Set(seen).size, 23, 'each once');
});

t.test('last is exclusive', async (t) => {
  const { m } = await setup(t);
  await cacheTags(m, [
    ['fixture.test', 'a'],
    ['fixture.test', 'b'],
    ['fixture.test', 'c'],
  ]);
  t.same((await catalog(m, '?last=a')).repositories, ['b', 'c']);
  t.same((await catalog(m, '?n=1&last=b')).repositories, ['c']);
  t.same((await catalog(m, '?last=c')).repositories, []);
});

t.test('n=0 answers an empty list', async (t) => {
  const { m } = await setup(t);
  await cacheTags(m, [['fixture.test', 'a']]);
  const { res, repositories } = await catalog(m, '?n=0');
  t.equal(res.status, 200);
  t.same(repositories, []);
});

t.test('an invalid n is PAGINATION_NUMBER_INVALID (400)', async (t) => {
  const { m } = await setup(t);
  const res = await fetch(`${m.url}/v2/_catalog?n=-1`);
  t.equal(res.status, 400);
  t.equal(((await res.json()) as { errors: Array<{ code: string }> }).errors[0]?.code, 'PAGINATION_NUMBER_INVALID');
});

t.test('a repository whose tag records were all deleted is not listed', async (t) => {
  const { m } = await setup(t);
  await cacheTags(m, [
    ['fixture.test', 'kept'],
    ['fixture.test', 'gone'],
  ]);
  await m.storage.deleteTag({ namespace: 'fixture.test', repository: 'gone' }, 'latest');
  t.same((await catalog(m)).repositories, ['kept']);
});

t.test('repositories of a namespace with client_auth are listed only to clients with its credentials', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'catalog-htpasswd-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'htpasswd');
  await writeFile(file, `alice:${bcrypt.hashSync('s3cret', 4)}\n`);
  const { m } = await setup(t, { clientAuthFile: file });
  await cacheTags(m, [
    ['fixture.test', 'public'],
    ['other.test', 'private'],
  ]);
  t.same((await catalog(m)).repositories, ['public'], 'anonymous: the public namespace only');
  t.same((await catalog(m, '', { authorization: basic('alice', 'nope') })).repositories, ['public'], 'wrong password: the same');
  t.same(
    (await catalog(m, '', { authorization: basic('alice', 's3cret') })).repositories,
    ['other.test/private', 'public'],
    'with credentials: both',
  );
});
