/**
 * Blobs across three in-process replicas (own filesystem roots, a static --peers list) and the fixture
 * upstream: a herd of GETs of one cold blob spread over the replicas costs one upstream download, the
 * non-owners stream it from the owner and keep nothing (unless --peer-cache-copies); an owner that is
 * gone is skipped before any byte is sent; an owner whose bytes do not match the digest cuts its
 * clients' transfers (never a complete wrong body), is marked down, and a retry is served right.
 */
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import t, { type Test } from 'tap';
import { HOP_HEADER } from '../../src/cluster/hop.js';
import { clusterKeys, rendezvousOwner } from '../../src/cluster/rendezvous.js';
import { randomBytesSeeded, sha256 } from '../fixtures/content.js';
import { startFixtureUpstream, type FixtureUpstream } from '../fixtures/upstream.js';
import { startMirror } from '../helpers/mirror.js';
import { startMirrorReplicas, type MirrorReplicas } from '../helpers/mirror-replicas.js';

const MiB = 1024 * 1024;
const REPO = 'x/app';

async function setup(t: Test, extra: { peerCacheCopies?: boolean } = {}): Promise<{ up: FixtureUpstream; cluster: MirrorReplicas }> {
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  const cluster = await startMirrorReplicas({ upstreams: [{ namespace: up.host, host: up.host }], ...extra });
  t.teardown(() => cluster.close());
  return { up, cluster };
}

interface Got {
  status: number;
  digest: string | undefined;
  bytes: number;
  error: string | undefined;
}

async function get(url: string): Promise<Got> {
  let status = 0;
  let bytes = 0;
  const hash = createHash('sha256');
  try {
    const res = await fetch(url);
    status = res.status;
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      hash.update(chunk);
      bytes += chunk.length;
    }
    return { status, bytes, digest: `sha256:${hash.digest('hex')}`, error: undefined };
  } catch (e) {
    return { status, bytes, digest: undefined, error: (e as Error).message };
  }
}

const blobUrl = (base: string, up: FixtureUpstream, digest: string): string => `${base}/v2/${REPO}/blobs/${digest}?ns=${up.host}`;

t.test('24 concurrent GETs of a cold blob over three replicas: one upstream download, stored by the owner only', async (t) => {
  const { up, cluster } = await setup(t);
  const blob = randomBytesSeeded(16 * MiB, 1);
  const digest = up.addBlob(blob);
  const got = await Promise.all(Array.from({ length: 24 }, (_, i) => get(blobUrl(cluster.urls[i % 3] as string, up, digest))));
  t.same(
    got.filter((g) => g.status !== 200 || g.digest !== digest || g.bytes !== blob.length),
    [],
    'every response is the verified blob',
  );
  t.equal(up.blobGets(digest), 1, 'one upstream download for the cluster');
  await Promise.all(cluster.replicas.map((r) => r.settled()));
  const owner = cluster.ownerOf(clusterKeys.digest(digest));
  t.ok(await owner.storage.statBlob(digest), 'the owner stored it');
  for (const r of cluster.othersOf(clusterKeys.digest(digest)))
    t.equal(await r.storage.statBlob(digest), undefined, `${r.url} keeps no copy`);
  const metrics = await (await fetch(`${cluster.othersOf(clusterKeys.digest(digest))[0]?.url}/metrics`)).text();
  t.match(metrics, /oci_registry_peer_requests_forwarded_total\{kind="blob"\} 1\b/, 'a non-owner asked its owner once for its 8 clients');
  t.match(metrics, /outcome="peer"/);

  const mark = up.requests.length;
  for (const r of cluster.othersOf(clusterKeys.digest(digest))) {
    const again = await get(blobUrl(r.url, up, digest));
    t.equal(again.digest, digest, `${r.url} serves it again from its owner`);
  }
  t.same(
    up.requests.slice(mark).map((q) => `${q.method} ${q.path}`),
    [],
    'with no upstream request',
  );
});

t.test('--peer-cache-copies: a non-owner keeps the blob the owner streamed', async (t) => {
  const { up, cluster } = await setup(t, { peerCacheCopies: true });
  const blob = randomBytesSeeded(2 * MiB, 2);
  const digest = up.addBlob(blob);
  const [other] = cluster.othersOf(clusterKeys.digest(digest));
  t.equal((await get(blobUrl(other?.url as string, up, digest))).digest, digest);
  await other?.settled();
  t.equal((await other?.storage.statBlob(digest))?.size, blob.length, 'kept');
  t.equal(up.blobGets(digest), 1);
});

t.test('the owner is gone: the blob is downloaded here, before any byte was sent', async (t) => {
  const { up, cluster } = await setup(t);
  const blob = randomBytesSeeded(2 * MiB, 3);
  const digest = up.addBlob(blob);
  const owner = cluster.ownerOf(clusterKeys.digest(digest));
  const [other] = cluster.othersOf(clusterKeys.digest(digest));
  await owner.close();
  const got = await get(blobUrl(other?.url as string, up, digest));
  t.equal(got.status, 200);
  t.equal(got.digest, digest);
  t.equal(up.blobGets(digest), 1);
  t.notOk(other?.server.cluster?.membership.live().includes(owner.url), 'the owner is marked down');
});

t.test('the owner does not have it upstream: its 404 is the answer, upstream is asked once', async (t) => {
  const { up, cluster } = await setup(t);
  const digest = sha256(Buffer.from('nowhere'));
  const [other] = cluster.othersOf(clusterKeys.digest(digest));
  const got = await get(blobUrl(other?.url as string, up, digest));
  t.equal(got.status, 404);
  t.equal(up.blobGets(digest), 1, 'only the owner asked');
});

/** A "replica" that answers every blob GET with `bytes` (whatever was asked). */
async function lyingPeer(host: string, port: number, bytes: Buffer): Promise<{ server: Server; hops: () => number }> {
  let hops = 0;
  const server = createServer((req, res) => {
    if (req.headers[HOP_HEADER] === '1') hops++;
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes.length });
    res.end(bytes);
  });
  await new Promise<void>((r) => server.listen(port, host, () => r()));
  return { server, hops: () => hops };
}

t.test('an owner sending bytes that do not match the digest: transfers cut, owner marked down, a retry is right', async (t) => {
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  const blob = randomBytesSeeded(4 * MiB, 4);
  const probe = await startMirror({ upstreams: [] });
  const port = Number(new URL(probe.url).port);
  await probe.close();
  const urls = [`http://127.0.0.1:${port}`, `http://127.0.0.2:${port}`];
  // A blob the liar (127.0.0.2) owns.
  let content = blob;
  for (let i = 5; rendezvousOwner(clusterKeys.digest(sha256(content)), urls) !== urls[1]; i++) content = randomBytesSeeded(4 * MiB, i);
  const digest = up.addBlob(content);
  const wrong = Buffer.from(content);
  wrong.writeUInt8(wrong.readUInt8(wrong.length - 1) ^ 0xff, wrong.length - 1);
  const liar = await lyingPeer('127.0.0.2', port, wrong);
  t.teardown(() => new Promise<void>((r) => liar.server.close(() => r())));
  const m = await startMirror({
    upstreams: [{ namespace: up.host, host: up.host }],
    listen: { host: '127.0.0.1', port },
    cluster: { peers: { kind: 'static', urls }, advertise: urls[0] as string, peerCacheCopies: false },
  });
  t.teardown(() => m.close());
  const herd = await Promise.all(Array.from({ length: 4 }, () => get(blobUrl(m.url, up, digest))));
  for (const g of herd) {
    t.ok(g.error !== undefined || g.status !== 200, 'the transfer is cut: no complete response');
    t.ok(g.bytes < content.length, 'never the whole (wrong) body');
  }
  t.equal(liar.hops(), 1, 'one forwarded request for the herd, with the hop header');
  t.notOk(m.server.cluster?.membership.live().includes(urls[1] as string), 'the liar is marked down');
  await m.settled();
  t.equal(await m.storage.statBlob(digest), undefined, 'nothing stored');
  const retry = await get(blobUrl(m.url, up, digest));
  t.equal(retry.status, 200);
  t.equal(retry.digest, digest, 'the retry is served from upstream, verified');
  t.equal(up.blobGets(digest), 1);
  const metrics = await (await fetch(`${m.url}/metrics`)).text();
  t.match(metrics, /oci_registry_peer_errors_total\{kind="blob",code="digest_mismatch"\} 1/);
});

t.test('an owner that dies after its headers, before any byte: the blob is downloaded here, the client never notices', async (t) => {
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  const probe = await startMirror({ upstreams: [] });
  const port = Number(new URL(probe.url).port);
  await probe.close();
  const urls = [`http://127.0.0.1:${port}`, `http://127.0.0.2:${port}`];
  let content = randomBytesSeeded(2 * MiB, 100);
  for (let i = 101; rendezvousOwner(clusterKeys.digest(sha256(content)), urls) !== urls[1]; i++) content = randomBytesSeeded(2 * MiB, i);
  const digest = up.addBlob(content);
  let asked = 0;
  const dying = createServer((_req, res) => {
    asked++;
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': content.length });
    res.flushHeaders();
    setTimeout(() => res.socket?.destroy(), 50);
  });
  await new Promise<void>((r) => dying.listen(port, '127.0.0.2', () => r()));
  t.teardown(() => new Promise<void>((r) => dying.close(() => r())));
  const m = await startMirror({
    upstreams: [{ namespace: up.host, host: up.host }],
    listen: { host: '127.0.0.1', port },
    cluster: { peers: { kind: 'static', urls }, advertise: urls[0] as string, peerCacheCopies: false },
  });
  t.teardown(() => m.close());
  const got = await get(blobUrl(m.url, up, digest));
  t.equal(got.status, 200);
  t.equal(got.digest, digest, 'the whole blob, from upstream');
  t.equal(asked, 1);
  t.equal(up.blobGets(digest), 1);
  t.notOk(m.server.cluster?.membership.live().includes(urls[1] as string), 'the owner is marked down');
});
