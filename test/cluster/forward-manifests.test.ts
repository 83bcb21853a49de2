/**
 * Manifests and tags across three in-process replicas (own filesystem roots, a static --peers list) and
 * the fixture upstream: a cold tag or digest asked on any replica costs one upstream GET per cluster (the
 * owner fetches, the others ask it, concurrent requests share one peer request); a replica that does
 * not own the key keeps no copy unless --peer-cache-copies; an owner that is gone or answers bytes that
 * do not match their digest is not trusted, and the replica serves as if alone.
 */
import { createServer, type Server } from 'node:http';
import t, { type Test } from 'tap';
import { clusterKeys, rendezvousOwner } from '../../src/cluster/rendezvous.js';
import { HOP_HEADER } from '../../src/cluster/hop.js';
import { startFixtureUpstream, MEDIA_TYPES, type FixtureUpstream } from '../fixtures/upstream.js';
import { startMirror } from '../helpers/mirror.js';
import { startMirrorReplicas, type MirrorReplicas } from '../helpers/mirror-replicas.js';

const ACCEPT = `${MEDIA_TYPES.ociManifest}, ${MEDIA_TYPES.ociIndex}`;
const REPO = 'x/app';

async function setup(t: Test, extra: { peerCacheCopies?: boolean } = {}): Promise<{ up: FixtureUpstream; cluster: MirrorReplicas }> {
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  const cluster = await startMirrorReplicas({ upstreams: [{ namespace: up.host, host: up.host }], ...extra });
  t.teardown(() => cluster.close());
  return { up, cluster };
}

const manifestGets = (up: FixtureUpstream): number => up.countRequests({ method: 'GET', pathIncludes: '/manifests/' });

t.test('24 concurrent GETs of a cold tag over three replicas: one upstream manifest GET', async (t) => {
  const { up, cluster } = await setup(t);
  const img = up.addImage(REPO, { tag: 'v1' });
  const responses = await Promise.all(
    Array.from({ length: 24 }, async (_, i) => {
      const r = cluster.replicas[i % 3];
      const res = await fetch(`${r?.url}/v2/${REPO}/manifests/v1?ns=${up.host}`, { headers: { accept: ACCEPT } });
      return { status: res.status, digest: res.headers.get('docker-content-digest'), body: Buffer.from(await res.arrayBuffer()) };
    }),
  );
  for (const r of responses) {
    t.equal(r.status, 200);
    t.equal(r.digest, img.digest);
    t.ok(r.body.equals(img.bytes));
  }
  t.equal(manifestGets(up), 1, 'one upstream manifest GET for the cluster');

  const key = clusterKeys.tag(up.host, REPO, 'v1');
  const owner = cluster.ownerOf(key);
  await Promise.all(cluster.replicas.map((r) => r.settled()));
  t.ok(await owner.storage.getTag({ namespace: up.host, repository: REPO }, 'v1'), 'the owner keeps the tag');
  for (const other of cluster.othersOf(key)) {
    t.equal(await other.storage.getTag({ namespace: up.host, repository: REPO }, 'v1'), undefined, `${other.url} keeps no copy of the tag`);
    t.equal(await other.storage.getManifest(img.digest), undefined, `${other.url} keeps no copy of the manifest`);
  }
  const metrics = await (await fetch(`${cluster.othersOf(key)[0]?.url}/metrics`)).text();
  t.match(metrics, /oci_registry_peer_requests_forwarded_total\{kind="manifest"\} 1\b/, 'a non-owner asked its owner once');
  t.match(metrics, /outcome="peer"/);
  const ownerMetrics = await (await fetch(`${owner.url}/metrics`)).text();
  t.match(
    ownerMetrics,
    /oci_registry_peer_requests_answered_total\{kind="manifest",status="200"\} 2\b/,
    'the owner answered each of the two peers once',
  );
});

t.test('a manifest by digest through a non-owner, then with the owner gone', async (t) => {
  const { up, cluster } = await setup(t);
  const img = up.addImage(REPO, { tag: 'v1' });
  const key = clusterKeys.digest(img.digest);
  const [other] = cluster.othersOf(key);
  const url = `${other?.url}/v2/${REPO}/manifests/${img.digest}?ns=${up.host}`;
  const first = await fetch(url, { headers: { accept: ACCEPT } });
  t.equal(first.status, 200);
  t.ok(Buffer.from(await first.arrayBuffer()).equals(img.bytes));
  t.equal(manifestGets(up), 1);
  const again = await fetch(url, { headers: { accept: ACCEPT } });
  await again.arrayBuffer();
  t.equal(manifestGets(up), 1, 'asked again: the owner has it, upstream is not asked');

  await cluster.ownerOf(key).close();
  const alone = await fetch(url, { headers: { accept: ACCEPT } });
  t.equal(alone.status, 200, 'the owner is gone: served from upstream here');
  t.ok(Buffer.from(await alone.arrayBuffer()).equals(img.bytes));
  t.equal(manifestGets(up), 2);
});

t.test('--peer-cache-copies: a non-owner keeps what the owner served', async (t) => {
  const { up, cluster } = await setup(t, { peerCacheCopies: true });
  const img = up.addImage(REPO, { tag: 'v1' });
  const key = clusterKeys.tag(up.host, REPO, 'v1');
  const [other] = cluster.othersOf(key);
  const res = await fetch(`${other?.url}/v2/${REPO}/manifests/v1?ns=${up.host}`, { headers: { accept: ACCEPT } });
  t.equal(res.status, 200);
  await res.arrayBuffer();
  await other?.settled();
  t.same((await other?.storage.getManifest(img.digest))?.bytes, img.bytes, 'the copy is kept');
  t.equal((await other?.storage.getTag({ namespace: up.host, repository: REPO }, 'v1'))?.digest, img.digest);
});

t.test('the owner answers for the client: a 404 there is a 404 here, without asking upstream again', async (t) => {
  const { up, cluster } = await setup(t);
  up.addImage(REPO, { tag: 'v1' });
  const key = clusterKeys.tag(up.host, REPO, 'nope');
  const [other] = cluster.othersOf(key);
  const res = await fetch(`${other?.url}/v2/${REPO}/manifests/nope?ns=${up.host}`, { headers: { accept: ACCEPT } });
  t.equal(res.status, 404);
  t.equal(((await res.json()) as { errors: Array<{ code: string }> }).errors[0]?.code, 'MANIFEST_UNKNOWN');
  t.equal(manifestGets(up), 1, 'only the owner asked upstream');
});

/** A "replica" that answers every manifest GET with these bytes and this digest header. */
async function lyingPeer(
  host: string,
  port: number,
  bytes: Buffer,
  digest: string,
): Promise<{ server: Server; hits: () => number; hops: () => number }> {
  let hits = 0;
  let hops = 0;
  const server = createServer((req, res) => {
    hits++;
    if (req.headers[HOP_HEADER] === '1') hops++;
    res.writeHead(200, { 'content-type': MEDIA_TYPES.ociManifest, 'docker-content-digest': digest, 'content-length': bytes.length });
    res.end(bytes);
  });
  await new Promise<void>((r) => server.listen(port, host, () => r()));
  return { server, hits: () => hits, hops: () => hops };
}

t.test('an owner whose manifest does not match its digest is not trusted: served from upstream here', async (t) => {
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  const img = up.addImage(REPO, { tag: 'v1' });
  // Two members: this mirror on 127.0.0.1 and a liar on 127.0.0.2 that owns the tag.
  const probe = await startMirror({ upstreams: [{ namespace: up.host, host: up.host }] });
  const port = Number(new URL(probe.url).port);
  await probe.close();
  const urls = [`http://127.0.0.1:${port}`, `http://127.0.0.2:${port}`];
  let tag = 'v1';
  for (let i = 0; rendezvousOwner(clusterKeys.tag(up.host, REPO, tag), urls) !== urls[1]; i++) tag = `t${i}`;
  up.setTag(REPO, tag, img.digest);
  const liar = await lyingPeer('127.0.0.2', port, Buffer.from('{"not":"it"}'), img.digest);
  t.teardown(() => new Promise<void>((r) => liar.server.close(() => r())));
  const m = await startMirror({
    upstreams: [{ namespace: up.host, host: up.host }],
    listen: { host: '127.0.0.1', port },
    cluster: { peers: { kind: 'static', urls }, advertise: urls[0] as string, peerCacheCopies: false },
  });
  t.teardown(() => m.close());
  const res = await fetch(`${m.url}/v2/${REPO}/manifests/${tag}?ns=${up.host}`, { headers: { accept: ACCEPT } });
  t.equal(res.status, 200);
  t.equal(res.headers.get('docker-content-digest'), img.digest);
  t.ok(Buffer.from(await res.arrayBuffer()).equals(img.bytes), 'the right bytes, from upstream');
  t.equal(liar.hits(), 1);
  t.equal(liar.hops(), 1, 'the forwarded request carried the hop header');
  t.equal(manifestGets(up), 1);
  t.notOk(m.server.cluster?.membership.live().includes(urls[1] as string), 'the liar is marked down');
  const metrics = await (await fetch(`${m.url}/metrics`)).text();
  t.match(metrics, /oci_registry_peer_errors_total\{kind="manifest",code="digest_mismatch"\} 1/);
});
