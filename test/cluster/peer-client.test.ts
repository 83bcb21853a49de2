/**
 * The peer client (src/cluster/peer-client.ts) against tiny HTTP servers on 127.0.0.1: an ordinary OCI
 * pull with ?ns=, the hop header and the client's Authorization; refusal, a stalled peer and a body cut
 * short mark the peer down; a 404 or an upstream failure at the owner do not; manifests are checked
 * against their digest.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { HOP_HEADER } from '../../src/cluster/hop.js';
import { PeerClient } from '../../src/cluster/peer-client.js';
import { PeerHealth } from '../../src/cluster/peer-health.js';

const blob = Buffer.alloc(256 * 1024, 7);
const blobDigest = `sha256:${createHash('sha256').update(blob).digest('hex')}`;

async function peerServer(t: Tap, handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server: Server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}
type Tap = Test;

function client(
  t: Tap,
  opts: { readTimeoutMs?: number } = {},
): { client: PeerClient; health: PeerHealth; errors: string[]; forwarded: string[] } {
  const health = new PeerHealth();
  const errors: string[] = [];
  const forwarded: string[] = [];
  const c = new PeerClient({
    health,
    observer: { forwarded: (k) => forwarded.push(k), peerError: (k, code) => errors.push(`${k}:${code}`) },
    connectTimeoutMs: 500,
    ...opts,
  });
  t.teardown(() => c.close());
  return { client: c, health, errors, forwarded };
}

async function readAll(body: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

t.test('a blob: GET /v2/<repo>/blobs/<digest>?ns=, hop header and Authorization sent, body streamed', async (t) => {
  const seen: IncomingMessage[] = [];
  const peer = await peerServer(t, (req, res) => {
    seen.push(req);
    res.writeHead(200, { 'content-length': blob.length, 'docker-content-digest': blobDigest });
    res.end(blob);
  });
  const { client: c, health, forwarded } = client(t);
  const r = await c.fetchBlob({
    peer,
    namespace: 'registry.local:5000',
    repository: 'library/alpine',
    digest: blobDigest,
    authorization: 'Basic dTpw',
  });
  t.equal(r.ok, true);
  if (!r.ok) return;
  t.equal(r.size, blob.length);
  t.equal(r.digest, blobDigest);
  t.ok((await readAll(r.body)).equals(blob), 'the bytes arrive');
  const req = seen[0];
  t.equal(req?.method, 'GET');
  t.equal(req?.url, `/v2/library/alpine/blobs/${blobDigest}?ns=registry.local%3A5000`);
  t.equal(req?.headers[HOP_HEADER], '1', 'marked as a hop');
  t.equal(req?.headers.authorization, 'Basic dTpw', "the client's Authorization travels with it");
  t.notOk(health.isDown(peer));
  t.same(forwarded, ['blob']);

  const anonymous = await c.fetchBlob({ peer, namespace: 'docker.io', repository: 'library/alpine', digest: blobDigest });
  t.equal(anonymous.ok, true);
  if (anonymous.ok) await readAll(anonymous.body);
  t.equal(seen[1]?.headers.authorization, undefined, 'no Authorization is invented');
});

t.test('a refused connection marks the peer down', async (t) => {
  // A port that was just free, closed again: it refuses.
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const refused = `http://127.0.0.1:${(probe.address() as AddressInfo).port}`;
  await new Promise<void>((r) => probe.close(() => r()));
  const { client: c, health, errors } = client(t);
  const r = await c.fetchBlob({ peer: refused, namespace: 'docker.io', repository: 'a/b', digest: blobDigest });
  t.equal(r.ok, false);
  if (r.ok) return;
  t.equal(r.peerDown, true);
  t.equal(r.code, 'ECONNREFUSED');
  t.ok(health.isDown(refused), 'marked down');
  t.same(errors, ['blob:ECONNREFUSED']);
});

t.test('a peer that accepts but never answers times out and is marked down', async (t) => {
  const peer = await peerServer(t, () => undefined);
  const { client: c, health } = client(t, { readTimeoutMs: 300 });
  const started = Date.now();
  const r = await c.fetchManifest({ peer, namespace: 'docker.io', repository: 'a/b', reference: 'latest' });
  t.equal(r.ok, false);
  if (r.ok) return;
  t.equal(r.code, 'UND_ERR_HEADERS_TIMEOUT');
  t.ok(Date.now() - started < 3000, 'the wait is bounded');
  t.ok(health.isDown(peer));
});

t.test('a body cut short marks the peer down; a body the consumer drops does not', async (t) => {
  const peer = await peerServer(t, (req, res) => {
    res.writeHead(200, { 'content-length': blob.length });
    if (req.url?.includes('cut')) {
      res.write(blob.subarray(0, 1000));
      setTimeout(() => res.socket?.destroy(), 50);
    } else {
      res.write(blob.subarray(0, 1000));
    }
  });
  const { client: c, health, errors } = client(t);
  const r = await c.fetchBlob({ peer, namespace: 'docker.io', repository: 'cut/here', digest: blobDigest });
  t.equal(r.ok, true, 'the headers came');
  if (!r.ok) return;
  await t.rejects(readAll(r.body), 'the consumer sees the failure');
  t.ok(health.isDown(peer), 'marked down mid-stream');
  t.equal(errors.length, 1);

  health.markUp(peer);
  const dropped = await c.fetchBlob({ peer, namespace: 'docker.io', repository: 'slow/one', digest: blobDigest });
  t.equal(dropped.ok, true);
  if (!dropped.ok) return;
  await new Promise((r) => dropped.body.once('data', r));
  dropped.body.destroy();
  await new Promise((r) => setTimeout(r, 50));
  t.notOk(health.isDown(peer), 'the client left: not the peer failing');
  t.equal(errors.length, 1);
});

t.test("the owner's answers: 404 and upstream failures are not the peer failing, a 500 is", async (t) => {
  const peer = await peerServer(t, (req, res) => {
    const [status, code] = req.url?.includes('missing')
      ? [404, 'BLOB_UNKNOWN']
      : req.url?.includes('upstream')
        ? [502, 'UPSTREAM_ERROR']
        : [500, 'INTERNAL'];
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ errors: [{ code, message: `says ${code}` }] }));
  });
  const { client: c, health } = client(t);
  const missing = await c.fetchBlob({ peer, namespace: 'docker.io', repository: 'missing/x', digest: blobDigest });
  t.match(missing, { ok: false, peerDown: false, status: 404, code: 'BLOB_UNKNOWN', message: 'says BLOB_UNKNOWN' });
  const upstream = await c.fetchBlob({ peer, namespace: 'docker.io', repository: 'upstream/x', digest: blobDigest });
  t.match(upstream, { ok: false, peerDown: false, status: 502, code: 'UPSTREAM_ERROR' });
  t.notOk(health.isDown(peer));
  const broken = await c.fetchBlob({ peer, namespace: 'docker.io', repository: 'broken/x', digest: blobDigest });
  t.match(broken, { ok: false, peerDown: true, status: 500, code: 'status_500' });
  t.ok(health.isDown(peer));
});

t.test('a manifest: Accept lists every type, the digest is checked against the bytes', async (t) => {
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', layers: [] }));
  const digest = `sha256:${createHash('sha256').update(manifest).digest('hex')}`;
  const accepts: string[] = [];
  const peer = await peerServer(t, (req, res) => {
    accepts.push(String(req.headers.accept));
    const lie = req.url?.includes('liar');
    res.writeHead(200, {
      'content-type': 'application/vnd.oci.image.manifest.v1+json',
      'docker-content-digest': lie ? `sha256:${'0'.repeat(64)}` : digest,
    });
    res.end(manifest);
  });
  const { client: c, health } = client(t);
  const good = await c.fetchManifest({ peer, namespace: 'docker.io', repository: 'library/alpine', reference: 'latest' });
  t.match(good, { ok: true, digest, mediaType: 'application/vnd.oci.image.manifest.v1+json' });
  if (good.ok) t.ok(good.bytes.equals(manifest));
  t.match(accepts[0], /application\/vnd\.oci\.image\.index\.v1\+json/);
  t.match(accepts[0], /application\/vnd\.docker\.distribution\.manifest\.v2\+json/);
  const byDigest = await c.fetchManifest({ peer, namespace: 'docker.io', repository: 'library/alpine', reference: digest });
  t.equal(byDigest.ok, true);

  const lying = await c.fetchManifest({ peer, namespace: 'docker.io', repository: 'liar/alpine', reference: 'latest' });
  t.match(lying, { ok: false, peerDown: true, code: 'digest_mismatch' });
  t.ok(health.isDown(peer), 'a peer serving bytes that do not match is marked down');
});
