import t from 'tap';
import { loadMirrorConfig } from '../../src/config/upstreams.js';
import { OciError } from '../../src/oci/errors.js';
import { ResolveCache } from '../../src/http/resolve-cache.js';
import { Resolver, type ResolveInput } from '../../src/resolve/resolver.js';

/** The real resolver (no config file: every public namespace), counting its calls. */
function counting(): { resolver: Pick<Resolver, 'resolve'>; calls: () => number } {
  const real = new Resolver(loadMirrorConfig());
  let n = 0;
  return {
    resolver: {
      resolve: (input: ResolveInput) => {
        n++;
        return real.resolve(input);
      },
    },
    calls: () => n,
  };
}

const input = (name: string, extra: Partial<ResolveInput> = {}): ResolveInput => ({
  name,
  ns: undefined,
  registryHeader: undefined,
  ...extra,
});

t.test('a name resolves once, then comes from memory with the same answer', async (t) => {
  const { resolver, calls } = counting();
  const cache = new ResolveCache(resolver);
  const first = cache.resolve(input('nginx'));
  const again = cache.resolve(input('nginx'));
  t.equal(calls(), 1);
  t.equal(again, first);
  t.match(first, { namespace: 'docker.io', repository: 'library/nginx', source: 'default' });
});

t.test('the same name under another ?ns= is a different resolution', async (t) => {
  const { resolver, calls } = counting();
  const cache = new ResolveCache(resolver);
  t.match(cache.resolve(input('org/app')), { namespace: 'docker.io', repository: 'org/app' });
  t.match(cache.resolve(input('org/app', { ns: 'ghcr.io' })), { namespace: 'ghcr.io', repository: 'org/app', source: 'ns' });
  t.match(cache.resolve(input('org/app', { ns: 'ghcr.io' })), { namespace: 'ghcr.io' });
  t.equal(calls(), 2);
});

t.test('an empty ?ns= is refused, never answered from what "no ns" resolved to', async (t) => {
  const { resolver } = counting();
  const cache = new ResolveCache(resolver);
  cache.resolve(input('nginx'));
  t.throws(() => cache.resolve(input('nginx', { ns: '' })), OciError);
});

t.test('refusals are not kept; X-Registry requests always ask the resolver', async (t) => {
  const { resolver, calls } = counting();
  const cache = new ResolveCache(resolver);
  t.throws(() => cache.resolve(input('Bad_Name')), OciError);
  t.throws(() => cache.resolve(input('Bad_Name')), OciError);
  t.equal(calls(), 2);
  cache.resolve(input('app', { registryHeader: 'quay.io' }));
  t.match(cache.resolve(input('app', { registryHeader: 'quay.io' })), { namespace: 'quay.io', source: 'header' });
  t.equal(calls(), 4);
});
