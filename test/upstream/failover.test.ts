import t from 'tap';
import { readAll, rejection } from '../helpers/upstream-results.js';
import { createServer, type AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { defaultUpstreamSettings } from '../../src/config/upstreams.js';
import type { FallbackHost, UpstreamConfig } from '../../src/config/types.js';
import { createLogger } from '../../src/log.js';
import { UpstreamPool } from '../../src/upstream/upstream-pool.js';
import type { UpstreamClient, UpstreamObserver } from '../../src/upstream/upstream-client.js';
import { randomBytesSeeded, sha256 } from '../fixtures/content.js';
import { startFixtureUpstream, type FixtureOptions, type FixtureUpstream } from '../fixtures/upstream.js';
import { startMirror } from '../helpers/mirror.js';

type T = { teardown(fn: () => unknown): void };

const NS = 'registry.failover.test';
const OCI_ACCEPT = 'application/vnd.oci.image.manifest.v1+json';

async function fixture(t: T, options?: FixtureOptions): Promise<FixtureUpstream> {
  const up = await startFixtureUpstream(options);
  t.teardown(() => up.close());
  return up;
}

/** 127.0.0.1:<port> where nothing listens: connections are refused. */
async function closedPort(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `127.0.0.1:${port}`;
}

function config(primary: string, fallbacks: FallbackHost[], overrides: Partial<UpstreamConfig> = {}): UpstreamConfig {
  return {
    ...defaultUpstreamSettings(),
    namespace: NS,
    host: primary,
    tls: false,
    explicit: true,
    connectTimeoutMs: 2000,
    readTimeoutMs: 2000,
    fallbackHosts: fallbacks,
    ...overrides,
  };
}

interface Events {
  responses: { host: string; status: number }[];
  failovers: { from: string; to: string }[];
}

function pooled(
  t: T,
  cfg: UpstreamConfig,
  options: { now?: () => number; log?: string[] } = {},
): { client: UpstreamClient; events: Events } {
  const events: Events = { responses: [], failovers: [] };
  const observer: UpstreamObserver = {
    onResponse: (_ns, _kind, status, _s, host) => events.responses.push({ host, status }),
    onError: () => undefined,
    onFailover: (_ns, from, to) => events.failovers.push({ from, to }),
  };
  const lines = options.log;
  const pool = new UpstreamPool(observer, {
    ...(options.now ? { now: options.now } : {}),
    ...(lines
      ? {
          log: { warn: (o, msg) => lines.push(`${msg} ${JSON.stringify(o)}`), info: (o, msg) => lines.push(`${msg} ${JSON.stringify(o)}`) },
        }
      : {}),
  });
  t.teardown(() => pool.close());
  return { client: pool.client(cfg), events };
}

function authOf(up: FixtureUpstream): (string | undefined)[] {
  return [...up.requests.map((r) => r.headers.authorization), ...up.tokenRequests.map((r) => r.headers.authorization)];
}

function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

t.test('a primary refusing connections: the fallback serves the manifest and the blob through the mirror, digests intact', async (t) => {
  const fallback = await fixture(t);
  const layer = randomBytesSeeded(100 * 1024, 16);
  const img = fallback.addImage('org/app', { tag: 'v1', layers: [layer] });
  const logged: string[] = [];
  const log = createLogger('info', new Writable({ write: (chunk: Buffer, _e, cb) => (logged.push(chunk.toString()), cb()) }));
  const primary = await closedPort();
  const m = await startMirror({
    upstreams: [{ namespace: NS, host: primary, fallbackHosts: [{ host: fallback.host }], connectTimeoutMs: 2000 }],
    log,
  });
  t.teardown(() => m.close());

  const manifest = await fetch(`${m.url}/v2/org/app/manifests/v1?ns=${NS}`, { headers: { accept: OCI_ACCEPT } });
  t.equal(manifest.status, 200);
  const bytes = Buffer.from(await manifest.arrayBuffer());
  t.equal(sha256(bytes), img.digest, 'the manifest bytes are the fallback image');
  const blob = await fetch(`${m.url}/v2/org/app/blobs/${img.layerDigests[0]}?ns=${NS}`);
  t.equal(blob.status, 200);
  t.equal(sha256(Buffer.from(await blob.arrayBuffer())), img.layerDigests[0]);
  await m.settled();

  const json = await m.server.metrics.registry.getMetricsAsJSON();
  const requests = json.find((x) => x.name === 'oci_registry_upstream_requests_total');
  const hosts = new Set((requests?.values ?? []).map((v) => v.labels['host']));
  t.same([...hosts], [fallback.host], 'every upstream response is labelled with the fallback host');
  const failovers = json.find((x) => x.name === 'oci_registry_upstream_failovers_total');
  t.ok(
    (failovers?.values ?? []).some((v) => v.labels['from'] === primary && v.labels['to'] === fallback.host && v.value >= 1),
    'the failover is counted from primary to fallback',
  );
  const errors = json.find((x) => x.name === 'oci_registry_upstream_errors_total');
  t.ok(
    (errors?.values ?? []).some((v) => v.labels['host'] === primary && v.labels['code'] === 'UPSTREAM_UNAVAILABLE'),
    'the refusal is an error of the primary host',
  );
  t.ok(
    logged.some((l) => l.includes('trying the next one') && l.includes(primary) && l.includes(fallback.host)),
    'a log line names both hosts',
  );
});

for (const status of [503, 429, 500]) {
  t.test(`a primary answering ${status}: the fallback answers`, async (t) => {
    const primary = await fixture(t);
    const fallback = await fixture(t);
    const img = fallback.addImage('org/app', { tag: 'v1' });
    primary.setGlobalFault({ kind: 'status', status });
    const { client, events } = pooled(t, config(primary.host, [{ host: fallback.host }]));
    const got = await client.getManifest('org/app', 'v1');
    t.equal(got.digest, img.digest);
    t.same(events.failovers, [{ from: primary.host, to: fallback.host }]);
    t.same(
      events.responses.map((r) => r.host),
      [primary.host, fallback.host],
    );
  });
}

t.test('a primary that times out before its headers: the fallback answers', async (t) => {
  const primary = await fixture(t);
  const fallback = await fixture(t);
  const img = fallback.addImage('org/app', { tag: 'v1' });
  primary.setGlobalFault({ kind: 'stall', ms: 3000 });
  const { client, events } = pooled(t, config(primary.host, [{ host: fallback.host }], { readTimeoutMs: 300 }));
  const got = await client.getManifest('org/app', 'v1');
  t.equal(got.digest, img.digest);
  t.same(events.failovers, [{ from: primary.host, to: fallback.host }]);
});

t.test('a primary answering 404 is an answer: no failover, the client gets 404', async (t) => {
  const primary = await fixture(t);
  const fallback = await fixture(t);
  fallback.addImage('org/app', { tag: 'v1' });
  const { client, events } = pooled(t, config(primary.host, [{ host: fallback.host }]));
  const err = await rejection(client.getManifest('org/app', 'v1'));
  t.equal(err.code, 'MANIFEST_UNKNOWN');
  t.equal(fallback.requests.length, 0, 'the fallback was never asked');
  t.same(events.failovers, []);
});

t.test('a primary answering 401 to valid-looking credentials is an answer: no failover to a host that would allow it', async (t) => {
  const primary = await fixture(t, { auth: { kind: 'basic', username: 'u', password: 'right' } });
  const fallback = await fixture(t);
  fallback.addImage('org/app', { tag: 'v1' });
  const { client } = pooled(t, config(primary.host, [{ host: fallback.host }], { username: 'u', password: 'wrong' }));
  const err = await rejection(client.getManifest('org/app', 'v1'));
  t.equal(err.code, 'DENIED');
  t.equal(fallback.requests.length, 0);
});

t.test("when every host fails, the last host's answer is the client's", async (t) => {
  const primary = await fixture(t);
  const fallback = await fixture(t);
  primary.setGlobalFault({ kind: 'status', status: 503 });
  fallback.setGlobalFault({ kind: 'status', status: 429, headers: { 'retry-after': '7' } });
  const { client } = pooled(t, config(primary.host, [{ host: fallback.host }]));
  const err = await rejection(client.getManifest('org/app', 'v1'));
  t.equal(err.code, 'TOOMANYREQUESTS');
});

t.test('with every host in back-off a request is still tried, the soonest-due host first', async (t) => {
  const primary = await fixture(t);
  const fallback = await fixture(t);
  primary.addImage('org/app', { tag: 'v1' });
  const clock = { ms: 1_000_000 };
  const { client } = pooled(t, config(primary.host, [{ host: fallback.host }]), { now: () => clock.ms });
  primary.setGlobalFault({ kind: 'status', status: 503 });
  fallback.setGlobalFault({ kind: 'status', status: 503 });
  await rejection(client.getManifest('org/app', 'v1'));
  primary.setGlobalFault(undefined);
  const got = await client.getManifest('org/app', 'v1');
  t.ok(got.digest, 'the primary, due first, answered although both were in back-off');
});

t.test('the primary is skipped during its back-off and used again after it', async (t) => {
  const primary = await fixture(t);
  const fallback = await fixture(t);
  primary.addImage('org/app', { tag: 'v1' });
  fallback.addImage('org/app', { tag: 'v1' });
  const clock = { ms: 1_000_000 };
  const lines: string[] = [];
  const { client } = pooled(t, config(primary.host, [{ host: fallback.host }], { failoverBackoffMs: 30_000 }), {
    now: () => clock.ms,
    log: lines,
  });
  primary.setGlobalFault({ kind: 'status', status: 503 });
  await client.getManifest('org/app', 'v1');
  primary.setGlobalFault(undefined);
  primary.clearRequests();
  fallback.clearRequests();

  clock.ms += 29_000;
  await client.getManifest('org/app', 'v1');
  t.equal(primary.requests.length, 0, 'within the back-off the primary is not asked');
  t.equal(fallback.requests.length, 1);

  clock.ms += 2_000;
  await client.getManifest('org/app', 'v1');
  t.equal(primary.requests.length, 1, 'after the back-off the primary answers again');
  t.equal(fallback.requests.length, 1, 'and the fallback is not asked');
  t.ok(
    lines.some((l) => l.startsWith('upstream primary host answers again') && l.includes(primary.host)),
    'its return is logged',
  );
});

t.test('a primary failing again after its back-off waits twice as long', async (t) => {
  const primary = await fixture(t);
  const fallback = await fixture(t);
  fallback.addImage('org/app', { tag: 'v1' });
  const clock = { ms: 1_000_000 };
  const { client } = pooled(t, config(primary.host, [{ host: fallback.host }], { failoverBackoffMs: 30_000 }), { now: () => clock.ms });
  primary.setGlobalFault({ kind: 'status', status: 503 });
  await client.getManifest('org/app', 'v1');
  clock.ms += 31_000;
  await client.getManifest('org/app', 'v1');
  t.equal(primary.requests.length, 2, 'tried again after 30 s, failing');
  clock.ms += 59_000;
  await client.getManifest('org/app', 'v1');
  t.equal(primary.requests.length, 2, 'not within the doubled back-off');
  clock.ms += 2_000;
  await client.getManifest('org/app', 'v1');
  t.equal(primary.requests.length, 3, 'tried after 60 s');
});

t.test("a fallback with its own credentials gets only those; the primary's never leave for it", async (t) => {
  const primary = await fixture(t, { auth: { kind: 'basic', username: 'alice', password: 'primary-secret' } });
  const fallback = await fixture(t, { auth: { kind: 'basic', username: 'bob', password: 'fallback-secret' } });
  fallback.addImage('org/app', { tag: 'v1' });
  primary.addImage('org/app', { tag: 'v1' });
  const cfg = config(primary.host, [{ host: fallback.host, credentials: { username: 'bob', password: 'fallback-secret' } }], {
    username: 'alice',
    password: 'primary-secret',
  });
  const { client } = pooled(t, cfg);
  await client.getManifest('org/app', 'v1');
  t.ok(authOf(primary).includes(basic('alice', 'primary-secret')), 'the primary saw its credentials');
  primary.setGlobalFault({ kind: 'status', status: 503 });
  await client.getManifest('org/app', 'v1');
  const seen = authOf(fallback).filter((a) => a !== undefined);
  t.ok(seen.length > 0);
  t.same([...new Set(seen)], [basic('bob', 'fallback-secret')], 'the fallback saw only its own credentials');
  t.notOk(authOf(primary).includes(basic('bob', 'fallback-secret')), "the primary never saw the fallback's");
});

t.test("a fallback given as a host string inherits the primary's credentials", async (t) => {
  const primary = await fixture(t);
  const fallback = await fixture(t, { auth: { kind: 'basic', username: 'alice', password: 's' } });
  fallback.addImage('org/app', { tag: 'v1' });
  primary.setGlobalFault({ kind: 'status', status: 503 });
  const { client } = pooled(t, config(primary.host, [{ host: fallback.host }], { username: 'alice', password: 's' }));
  await client.getManifest('org/app', 'v1');
  t.ok(authOf(fallback).includes(basic('alice', 's')));
});

t.test("Bearer tokens are cached per host: the primary's token is never sent to the fallback", async (t) => {
  const primary = await fixture(t, { auth: { kind: 'bearer', username: 'alice', password: 'a' } });
  const fallback = await fixture(t, { auth: { kind: 'bearer', username: 'bob', password: 'b' } });
  primary.addImage('org/app', { tag: 'v1' });
  fallback.addImage('org/app', { tag: 'v1' });
  const cfg = config(primary.host, [{ host: fallback.host, credentials: { username: 'bob', password: 'b' } }], {
    username: 'alice',
    password: 'a',
  });
  const { client } = pooled(t, cfg);
  await client.getManifest('org/app', 'v1');
  const primaryBearers = new Set(primary.requests.map((r) => r.headers.authorization).filter((a) => a?.startsWith('Bearer ')));
  t.equal(primaryBearers.size, 1);
  primary.setGlobalFault({ kind: 'status', status: 503 });
  await client.getManifest('org/app', 'v1');
  for (const r of fallback.requests)
    t.notOk(r.headers.authorization !== undefined && primaryBearers.has(r.headers.authorization), 'no primary token at the fallback');
  t.ok(
    fallback.tokenRequests.some((r) => r.headers.authorization === basic('bob', 'b')),
    'the fallback token came from its own credentials',
  );
});

t.test('a blob body failing mid-stream is not continued from the fallback', async (t) => {
  const primary = await fixture(t);
  const fallback = await fixture(t);
  const layer = randomBytesSeeded(256 * 1024, 5);
  const digest = primary.addBlob(layer);
  fallback.addBlob(layer);
  primary.setBlobFault(digest, { kind: 'reset', afterBytes: 1024 });
  const { client } = pooled(t, config(primary.host, [{ host: fallback.host }]));
  const blob = await client.getBlob('org/app', digest);
  await t.rejects(readAll(blob.body));
  t.equal(fallback.blobGets(digest), 0, 'the fallback was not asked inside the same response');
});

t.test('a fallback serving other bytes than the digest cannot get them cached or served whole', async (t) => {
  const fallback = await fixture(t);
  const img = fallback.addImage('org/app', { tag: 'v1', layers: [randomBytesSeeded(64 * 1024, 9)] });
  const digest = img.layerDigests[0] as string;
  fallback.setBlobFault(digest, { kind: 'wrong-digest' });
  const m = await startMirror({ upstreams: [{ namespace: NS, host: await closedPort(), fallbackHosts: [{ host: fallback.host }] }] });
  t.teardown(() => m.close());
  let first: { status: number; body: Buffer } | undefined;
  try {
    const r = await fetch(`${m.url}/v2/org/app/blobs/${digest}?ns=${NS}`);
    first = { status: r.status, body: Buffer.from(await r.arrayBuffer()) };
  } catch {
    first = undefined; // the mirror cut the response when the digest did not match
  }
  t.ok(first === undefined || first.status !== 200 || sha256(first.body) !== digest, 'never the wrong bytes as the digest');
  await m.settled();
  fallback.setBlobFault(digest, undefined);
  const again = await fetch(`${m.url}/v2/org/app/blobs/${digest}?ns=${NS}`);
  t.equal(again.status, 200);
  t.equal(sha256(Buffer.from(await again.arrayBuffer())), digest, 'the next download is fetched and verified again');
  t.equal(fallback.blobGets(digest), 2, 'nothing wrong was cached');
});
