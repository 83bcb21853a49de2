/**
 * --max-connections-per-client: a client address gets at most N registry API responses at once; the next
 * request gets 429 TOOMANYREQUESTS (OCI error body, Retry-After). Counts are released when responses end
 * or their clients leave, and the per-address map keeps no entry at zero. Real sockets: the held responses
 * are raw TCP clients that stop reading a cached blob larger than the kernel's socket buffers absorb.
 */
import { connect } from 'node:net';
import t, { type Test } from 'tap';
import { ClientLimit } from '../../src/http/client-limit.js';
import { randomBytesSeeded, sha256 } from '../fixtures/content.js';
import { startFixtureUpstream, type FixtureUpstream } from '../fixtures/upstream.js';
import { eventually } from '../helpers/eventually.js';
import { startMirror, type TestMirror } from '../helpers/mirror.js';
import { rawGet, type RawGet } from '../helpers/raw-client.js';

const MiB = 1024 * 1024;
const CAP = 3;

interface Setup {
  up: FixtureUpstream;
  mirror: TestMirror;
  port: number;
  digest: string;
  path: string;
  /** Opens a response that stays in progress (its client reads nothing) and waits for its head. */
  hold: (localAddress?: string) => Promise<RawGet>;
}

async function setup(t: Test): Promise<Setup> {
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  // A send timeout far beyond the test: held responses stay held until their clients go.
  const mirror = await startMirror({
    upstreams: [{ namespace: up.host, host: up.host }],
    maxConnectionsPerClient: CAP,
    sendTimeoutMs: 600_000,
  });
  t.teardown(() => mirror.close());
  const digest = up.addBlob(randomBytesSeeded(32 * MiB, 7));
  const path = `/v2/library/app/blobs/${digest}?ns=${up.host}`;
  const res = await fetch(`${mirror.url}${path}`);
  t.equal(sha256(Buffer.from(await res.arrayBuffer())), digest, 'pulled once');
  await mirror.settled();
  const port = Number(new URL(mirror.url).port);
  const held: RawGet[] = [];
  t.teardown(() => held.forEach((c) => c.socket.destroy()));
  return {
    up,
    mirror,
    port,
    digest,
    path,
    hold: async (localAddress) => {
      const c = rawGet(port, path, localAddress ? { localAddress } : {});
      held.push(c);
      t.equal((await c.head).status, 200, 'a held response');
      return c;
    },
  };
}

t.test('a client over its cap gets 429 TOOMANYREQUESTS in the OCI error format, with Retry-After', async (t) => {
  const s = await setup(t);
  for (let i = 0; i < CAP; i++) await s.hold();
  const res = await fetch(`${s.mirror.url}${s.path}`);
  t.equal(res.status, 429);
  t.match(res.headers.get('content-type'), /^application\/json/);
  t.ok(Number(res.headers.get('retry-after')) > 0, `Retry-After: ${res.headers.get('retry-after')}`);
  const body = (await res.json()) as { errors: { code: string; message: string; detail: unknown }[] };
  t.equal(body.errors[0]?.code, 'TOOMANYREQUESTS');
  t.same(body.errors[0]?.detail, { limit: CAP });
  const head = await fetch(`${s.mirror.url}${s.path}`, { method: 'HEAD' });
  t.equal(head.status, 429, 'HEAD is counted and refused too');
  const metrics = await (await fetch(`${s.mirror.url}/metrics`)).text();
  t.match(metrics, /^oci_registry_client_limit_rejections_total 2$/m, 'counted');
});

t.test('a response that ends, or whose client leaves, gives its place back', async (t) => {
  const s = await setup(t);
  const held = [];
  for (let i = 0; i < CAP; i++) held.push(await s.hold());
  t.equal((await fetch(`${s.mirror.url}${s.path}`, { method: 'HEAD' })).status, 429, 'at the cap');
  // A client that leaves.
  held[0]?.socket.destroy();
  t.ok(
    await eventually(async () => (await fetch(`${s.mirror.url}${s.path}`, { method: 'HEAD' })).status === 200),
    'a place is free once it left',
  );
  // A response that ends: a client reading to the end.
  const reader = held[1] as RawGet;
  reader.readAll();
  await eventually(() => reader.bodyBytes >= 32 * MiB, 60_000);
  t.equal(reader.bodyDigest(), s.digest, 'the held response completes');
  // Two places are free now: two more held responses, then the cap again.
  await s.hold();
  await s.hold();
  t.equal((await fetch(`${s.mirror.url}${s.path}`, { method: 'HEAD' })).status, 429, 'at the cap again');
});

t.test('sequential requests on one keep-alive connection never count more than one', async (t) => {
  const s = await setup(t);
  for (let i = 0; i < CAP - 1; i++) await s.hold();
  // The last place, used 20 times in a row.
  for (let i = 0; i < 20; i++) {
    const res = await fetch(`${s.mirror.url}${s.path}`, { method: 'HEAD' });
    t.equal(res.status, 200, `request ${i + 1}`);
  }
});

t.test('other client addresses, probes and metrics are not affected by one client at its cap', async (t) => {
  const s = await setup(t);
  for (let i = 0; i < CAP; i++) await s.hold();
  t.equal((await fetch(`${s.mirror.url}${s.path}`, { method: 'HEAD' })).status, 429, 'this client is at its cap');
  for (const p of ['/healthz', '/readyz', '/metrics']) t.equal((await fetch(`${s.mirror.url}${p}`)).status, 200, `${p} answers`);
  // Linux routes all of 127.0.0.0/8 to loopback: 127.0.0.2 is another client address.
  const other = await s.hold('127.0.0.2');
  t.ok(other, 'a client at another address gets its response');
});

t.test('abuse: 40 connections at once from one address get exactly the cap of responses, the rest 429 at once', async (t) => {
  const s = await setup(t);
  const clients = Array.from({ length: 40 }, () => rawGet(s.port, s.path));
  t.teardown(() => clients.forEach((c) => c.socket.destroy()));
  const statuses = await Promise.all(clients.map((c) => c.head.then((h) => h.status)));
  t.equal(statuses.filter((x) => x === 200).length, CAP, `${CAP} responses in progress`);
  t.equal(statuses.filter((x) => x === 429).length, 40 - CAP, 'every other connection is refused, not queued');
  // Once they all go, the address has its full cap again.
  clients.forEach((c) => c.socket.destroy());
  await eventually(async () => (await fetch(`${s.mirror.url}${s.path}`, { method: 'HEAD' })).status === 200);
  for (let i = 0; i < CAP; i++) await s.hold();
});

t.test('abuse: requests that never finish sending their headers hold no place', async (t) => {
  const s = await setup(t);
  // Half-sent requests: Node's parser has no request yet, so nothing is counted.
  const partial = Array.from({ length: 10 }, () => {
    const socket = connect(s.port, '127.0.0.1');
    socket.on('error', () => undefined);
    socket.write(`GET ${s.path} HTTP/1.1\r\nHost: x\r\n`);
    return socket;
  });
  t.teardown(() => partial.forEach((p) => p.destroy()));
  await new Promise((r) => setTimeout(r, 200));
  for (let i = 0; i < CAP; i++) await s.hold();
});

t.test('the per-address counts keep no entry at zero', async (t) => {
  const limit = new ClientLimit(2);
  const releases = Array.from({ length: 1000 }, (_, i) => limit.acquire(`10.0.${i >> 8}.${i & 255}`));
  t.equal(releases.filter(Boolean).length, 1000, '1000 addresses, one response each');
  t.equal(limit.clients, 1000);
  const a = limit.acquire('10.0.0.0');
  t.ok(a, 'a second place for one address');
  t.equal(limit.acquire('10.0.0.0'), undefined, 'not a third');
  for (const r of releases) r?.();
  a?.();
  t.equal(limit.clients, 0, 'every entry is gone');
  // Releasing twice does not free a place that another response holds.
  const b = limit.acquire('10.0.0.1');
  const c = limit.acquire('10.0.0.1');
  b?.();
  b?.();
  t.equal(limit.count('10.0.0.1'), 1, 'a second release of the same response is ignored');
  c?.();
  t.equal(limit.clients, 0);
});
