/** ManifestService with an in-memory storage and upstream: how long a tag is trusted, and what happens after. */
import t from 'tap';
import { ManifestService } from '../../src/proxy/manifest-service.js';
import { MemoryStorage } from '../helpers/memory-storage.js';
import { FakeUpstream, silentLog, testLinks, testRepo } from '../helpers/proxy-fakes.js';

function setup() {
  const storage = new MemoryStorage();
  const upstream = new FakeUpstream();
  let clock = 1_000_000;
  const now = () => clock;
  const service = new ManifestService({ storage, upstreams: upstream.upstreams, log: silentLog, links: testLinks(storage, now), now });
  return { storage, upstream, service, advance: (ms: number) => (clock += ms) };
}

const tag = { kind: 'tag' as const, tag: 'latest' };

t.test('a tag is trusted for manifest_invalidation_time, then re-checked with a HEAD', async (t) => {
  const { upstream, service, advance } = setup();
  const repo = testRepo();
  const digest = upstream.tag('latest', Buffer.from('{"schemaVersion":2,"v":1}'));
  const first = await service.get(repo, tag);
  t.equal(first.outcome, 'miss');
  t.equal(first.digest, digest);
  t.equal(upstream.calls.getManifest, 1);

  advance(repo.upstream.manifestInvalidationMs - 1);
  const fresh = await service.get(repo, tag);
  t.equal(fresh.outcome, 'hit', 'fresh: served from the cache');
  t.equal(upstream.calls.headManifest + upstream.calls.getManifest, 1, 'without asking upstream');

  advance(2);
  const checked = await service.get(repo, tag);
  t.equal(checked.outcome, 'revalidated', 'expired: re-checked');
  t.equal(upstream.calls.headManifest, 1, 'with a HEAD');
  t.equal(upstream.calls.getManifest, 1, 'and no GET, the digest being the same');

  const moved = upstream.tag('latest', Buffer.from('{"schemaVersion":2,"v":2}'));
  advance(repo.upstream.manifestInvalidationMs + 1);
  const next = await service.get(repo, tag);
  t.equal(next.outcome, 'miss', 'the tag moved upstream: fetched again');
  t.equal(next.digest, moved);
  t.equal(upstream.calls.getManifest, 2);
});

t.test('concurrent requests for one tag make one upstream fetch', async (t) => {
  const { upstream, service } = setup();
  const repo = testRepo();
  upstream.tag('latest', Buffer.from('{"schemaVersion":2}'));
  const results = await Promise.all([service.get(repo, tag), service.get(repo, tag), service.get(repo, tag)]);
  t.same(new Set(results.map((r) => r.digest)).size, 1, 'one answer');
  t.equal(upstream.calls.getManifest, 1, 'one fetch');
});
