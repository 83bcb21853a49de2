/**
 * The pool holds one agent (connection pool) and the tokens per upstream. Namespaces are client input
 * with open mirroring (`?ns=<anything public>`), so the clients of unlisted upstreams must be bounded,
 * expire when idle, and have their agents closed - gracefully: a download running on an evicted agent
 * still finishes.
 */
import t, { type Test } from 'tap';
import { Agent } from 'undici';
import { defaultUpstreamSettings } from '../../src/config/upstreams.js';
import type { UpstreamConfig } from '../../src/config/types.js';
import { createUpstreamDispatcher } from '../../src/upstream/dispatcher.js';
import { UpstreamPool, type UpstreamPoolOptions } from '../../src/upstream/upstream-pool.js';
import { randomBytesSeeded } from '../fixtures/content.js';
import { startFixtureUpstream } from '../fixtures/upstream.js';
import { eventually } from '../helpers/eventually.js';

function implicit(namespace: string): UpstreamConfig {
  return { ...defaultUpstreamSettings(), namespace, host: namespace, explicit: false };
}

/** A pool whose agents are recorded, so a test can see which were closed. */
function recordingPool(t: Test, options: UpstreamPoolOptions = {}): { pool: UpstreamPool; agents: Map<string, Agent> } {
  const agents = new Map<string, Agent>();
  const pool = new UpstreamPool(undefined, {
    createDispatcher: (config) => {
      const agent = new Agent();
      agents.set(config.namespace, agent);
      return agent;
    },
    ...options,
  });
  t.teardown(() => pool.destroy());
  return { pool, agents };
}

function clock(): { now: () => number; advance(ms: number): void } {
  let now = 1_000_000;
  return { now: () => now, advance: (ms) => (now += ms) };
}

t.test('clients of many distinct unlisted namespaces stay at the bound, and the evicted agents are closed', async (t) => {
  const { pool, agents } = recordingPool(t, { maxUnlisted: 8 });
  for (let i = 0; i < 1000; i++) pool.client(implicit(`ns${i}.example`));
  t.equal(pool.sizes.unlisted, 8, 'only the 8 most recent unlisted clients are kept');
  t.equal(agents.size, 1000);
  t.ok(await eventually(() => [...agents.values()].filter((a) => a.closed).length === 992), 'the 992 evicted agents are closed');
  for (let i = 992; i < 1000; i++) t.notOk(agents.get(`ns${i}.example`)?.closed, `ns${i} (kept) is open`);
  t.ok(agents.get('ns0.example')?.closed, 'the first one was closed');
});

t.test('a recently used unlisted client survives a flood of others (least recently used goes first)', async (t) => {
  const { pool } = recordingPool(t, { maxUnlisted: 4 });
  const hot = pool.client(implicit('hot.example'));
  for (let i = 0; i < 20; i++) {
    t.equal(pool.client(implicit('hot.example')), hot);
    pool.client(implicit(`cold${i}.example`));
  }
  t.equal(pool.client(implicit('hot.example')), hot, 'the same client, never evicted');
});

t.test('configured upstreams keep their clients whatever the number of unlisted ones', async (t) => {
  const { pool, agents } = recordingPool(t, { maxUnlisted: 2 });
  const configured = { ...implicit('registry.internal'), explicit: true };
  const first = pool.client(configured);
  for (let i = 0; i < 100; i++) pool.client(implicit(`ns${i}.example`));
  t.equal(pool.client(configured), first);
  t.same(pool.sizes.listed, 1);
  t.notOk(agents.get('registry.internal')?.closed);
});

t.test('isListed decides which upstreams are kept (UPSTREAM_CREDENTIALS entries are not explicit but configured)', async (t) => {
  const { pool } = recordingPool(t, { maxUnlisted: 1, isListed: (c) => c.namespace === 'ghcr.io' });
  const ghcr = pool.client(implicit('ghcr.io'));
  pool.client(implicit('a.example'));
  pool.client(implicit('b.example'));
  t.equal(pool.client(implicit('ghcr.io')), ghcr);
  t.same({ listed: pool.sizes.listed, unlisted: pool.sizes.unlisted }, { listed: 1, unlisted: 1 });
});

t.test('an unlisted client unused for the idle time is dropped and its agent closed', async (t) => {
  const c = clock();
  const { pool, agents } = recordingPool(t, { unlistedIdleMs: 60_000, now: c.now });
  const first = pool.client(implicit('idle.example'));
  c.advance(59_000);
  t.equal(pool.client(implicit('idle.example')), first, 'used within the idle time: kept');
  c.advance(60_000);
  t.equal(pool.sizes.unlisted, 0, 'idle for the idle time: dropped');
  t.ok(await eventually(() => agents.get('idle.example')?.closed === true), 'its agent is closed');
  t.not(pool.client(implicit('idle.example')), first, 'a new client next time');
});

t.test('a download running on an evicted agent finishes, then the agent is closed', async (t) => {
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  const bytes = randomBytesSeeded(2_000_000, 7);
  const digest = up.addBlob(bytes);
  up.setBlobFault(digest, { kind: 'slow', chunkSize: 200_000, delayMs: 30 });
  const agents: Agent[] = [];
  // Unlisted but reachable on 127.0.0.1: explicit (no address guard), isListed says no.
  const pool = new UpstreamPool(undefined, {
    maxUnlisted: 1,
    isListed: () => false,
    createDispatcher: (config) => {
      const agent = createUpstreamDispatcher(config);
      agents.push(agent);
      return agent;
    },
  });
  t.teardown(() => pool.destroy());
  const config: UpstreamConfig = { ...defaultUpstreamSettings(), namespace: up.host, host: up.host, tls: false, explicit: true };
  const blob = await pool.client(config).getBlob('org/app', digest);
  pool.client(implicit('other.example')); // evicts the fixture's client mid-download
  const chunks: Buffer[] = [];
  for await (const chunk of blob.body) chunks.push(chunk as Buffer);
  t.same(Buffer.concat(chunks), bytes, 'every byte arrived');
  t.ok(await eventually(() => agents[0]?.closed === true), 'then the evicted agent is closed');
});

t.test(
  'a request still being sent when its client is evicted completes (its token fetch and retry too); the agent closes after it',
  async (t) => {
    // The first request stalls, then answers 401: the token request and the retry come after the eviction.
    const up = await startFixtureUpstream({ auth: { kind: 'bearer' } });
    t.teardown(() => up.close());
    const img = up.addImage('org/app', { tag: 'v1' });
    up.setGlobalFault({ kind: 'stall', ms: 300, times: 1 });
    const agents: Agent[] = [];
    const pool = new UpstreamPool(undefined, {
      maxUnlisted: 1,
      isListed: () => false,
      createDispatcher: (config) => {
        const agent = createUpstreamDispatcher(config);
        agents.push(agent);
        return agent;
      },
    });
    t.teardown(() => pool.destroy());
    const config: UpstreamConfig = { ...defaultUpstreamSettings(), namespace: up.host, host: up.host, tls: false, explicit: true };
    const pending = pool.client(config).getManifest('org/app', 'v1');
    pool.client(implicit('other.example'));
    t.equal((await pending).digest, img.digest);
    t.equal(up.tokenRequests.length, 1, 'the token was fetched after the eviction');
    t.ok(await eventually(() => agents[0]?.closed === true), 'then the evicted agent is closed');
  },
);

t.test('bearer tokens of many repositories stay within the token cache bound', async (t) => {
  const up = await startFixtureUpstream({ auth: { kind: 'bearer' } });
  t.teardown(() => up.close());
  for (let i = 0; i < 60; i++) up.addImage(`org/app${i}`, { tag: 'v1' });
  const pool = new UpstreamPool(undefined, { tokenCacheBytes: 4096 });
  t.teardown(() => pool.close());
  const client = pool.client({ ...defaultUpstreamSettings(), namespace: up.host, host: up.host, tls: false, explicit: true });
  for (let i = 0; i < 60; i++) await client.getManifest(`org/app${i}`, 'v1');
  t.equal(up.tokenRequests.length, 60, 'one token per repository');
  const held = pool.sizes.listedTokens;
  t.ok(held > 0 && held < 30, `at most the 4 KiB budget of tokens is held (${held} of 60)`);
});

t.test('close() closes every agent, evicted ones still draining included', async (t) => {
  const { pool, agents } = recordingPool(t, { maxUnlisted: 1 });
  pool.client(implicit('a.example'));
  pool.client(implicit('b.example'));
  await pool.close();
  t.ok([...agents.values()].every((a) => a.closed));
  t.same({ listed: pool.sizes.listed, unlisted: pool.sizes.unlisted }, { listed: 0, unlisted: 0 });
});
