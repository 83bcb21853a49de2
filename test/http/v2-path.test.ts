import t from 'tap';
import { parseV2Path, parseV2PathCached } from '../../src/http/v2-path.js';

const D = `sha256:${'d'.repeat(64)}`;

t.test('/v2 and /v2/ are the base endpoint', async (t) => {
  t.same(parseV2Path('/v2'), { kind: 'base' });
  t.same(parseV2Path('/v2/'), { kind: 'base' });
});

t.test('manifests, blobs and referrers split the name from the argument at any depth', async (t) => {
  t.same(parseV2Path('/v2/nginx/manifests/latest'), { kind: 'manifests', name: 'nginx', reference: 'latest' });
  t.same(parseV2Path(`/v2/a/b/c/d/blobs/${D}`), { kind: 'blobs', name: 'a/b/c/d', digest: D });
  t.same(parseV2Path(`/v2/org/app/referrers/${D}`), { kind: 'referrers', name: 'org/app', digest: D });
});

t.test('a host-like prefix stays part of the name (resolution happens later)', async (t) => {
  t.same(parseV2Path('/v2/docker.io/library/nginx/manifests/1.27'), {
    kind: 'manifests',
    name: 'docker.io/library/nginx',
    reference: '1.27',
  });
  t.same(parseV2Path('/v2/localhost:5000/app/tags/list'), { kind: 'tags', name: 'localhost:5000/app' });
});

t.test('a repository may itself be named manifests, blobs or tags', async (t) => {
  t.same(parseV2Path('/v2/org/manifests/manifests/latest'), { kind: 'manifests', name: 'org/manifests', reference: 'latest' });
  t.same(parseV2Path('/v2/tags/list/tags/list'), { kind: 'tags', name: 'tags/list' });
});

t.test('unknown endpoints and paths outside /v2 are undefined', async (t) => {
  t.equal(parseV2Path('/v3/nginx/manifests/latest'), undefined);
  t.equal(parseV2Path('/v2/nginx'), undefined);
  t.equal(parseV2Path('/v2/nginx/manifests'), undefined);
  t.equal(parseV2Path('/v2/nginx/uploads/x'), undefined);
  t.equal(parseV2Path('/v2/_catalog'), undefined);
  t.equal(parseV2Path('/v2x'), undefined);
});

t.test('percent-encoded characters, backslashes and NUL are NAME_INVALID', async (t) => {
  for (const p of ['/v2/a%2Fb/manifests/latest', '/v2/a/manifests/%2e%2e', '/v2/a\\b/blobs/x', '/v2/a\0/manifests/x']) {
    t.throws(() => parseV2Path(p), { code: 'NAME_INVALID' }, JSON.stringify(p));
  }
});

t.test('an empty name yields an empty string (refused later by the name grammar)', async (t) => {
  t.same(parseV2Path('/v2//manifests/latest'), { kind: 'manifests', name: '', reference: 'latest' });
});

t.test('the remembered parse answers as the parse does, and still refuses encoded paths', async (t) => {
  t.same(parseV2PathCached('/v2/nginx/manifests/latest'), { kind: 'manifests', name: 'nginx', reference: 'latest' });
  t.equal(parseV2PathCached('/v2/nginx/manifests/latest'), parseV2PathCached('/v2/nginx/manifests/latest'));
  t.equal(parseV2PathCached('/v2/nginx/other/x'), undefined);
  t.throws(() => parseV2PathCached('/v2/a%2fb/manifests/latest'));
  t.throws(() => parseV2PathCached('/v2/a%2fb/manifests/latest'));
});
