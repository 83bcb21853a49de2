/**
 * Bytes are stored once per digest, but access is per repository: a digest is served through
 * `namespace/repository` only after that repository's upstream showed it holds it (a download through it,
 * or a HEAD there), recorded as a link. Written as an attacker would try: reach content another
 * namespace or repository pulled, learn that it is cached, or make the mirror delete it.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import t, { type Test } from 'tap';
import tar from 'tar-stream';
import { importArchive } from '../../src/lifecycle/archives/import-archive.js';
import { FilesystemStorage } from '../../src/storage/filesystem/filesystem-storage.js';
import { randomBytesSeeded, sha256 } from '../fixtures/content.js';
import { makeImage } from '../fixtures/images.js';
import { MEDIA_TYPES, startFixtureUpstream, type AddedImage, type FixtureUpstream } from '../fixtures/upstream.js';
import { startMirror, type StartMirrorOptions, type TestMirror } from '../helpers/mirror.js';

const ACCEPT = `${MEDIA_TYPES.ociManifest}, ${MEDIA_TYPES.ociIndex}`;
const ALICE = `Basic ${Buffer.from('alice:s3cret').toString('base64')}`;

interface Reply {
  status: number;
  body: Buffer;
  digest: string | null;
}

async function request(url: string, init: { method?: string; authorization?: string } = {}): Promise<Reply> {
  const headers: Record<string, string> = { accept: ACCEPT };
  if (init.authorization) headers['authorization'] = init.authorization;
  const res = await fetch(url, { method: init.method ?? 'GET', headers, signal: AbortSignal.timeout(30_000) });
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()), digest: res.headers.get('docker-content-digest') };
}

function code(r: Reply): string | undefined {
  return (JSON.parse(r.body.toString('utf8')) as { errors: Array<{ code: string }> }).errors[0]?.code;
}

/** Requests that reached an upstream for manifests or blobs (GET and HEAD). */
function contentRequests(up: FixtureUpstream): number {
  return up.requests.filter((r) => r.path.includes('/manifests/') || r.path.includes('/blobs/')).length;
}

async function fixture(t: Test, options: Parameters<typeof startFixtureUpstream>[0] = {}): Promise<FixtureUpstream> {
  const up = await startFixtureUpstream({ repoScopedBlobs: true, ...options });
  t.teardown(() => up.close());
  return up;
}

async function mirror(t: Test, options: StartMirrorOptions): Promise<TestMirror> {
  const m = await startMirror(options);
  t.teardown(() => m.close());
  return m;
}

async function htpasswd(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'access-scope-htpasswd-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'htpasswd');
  await writeFile(file, `alice:${bcrypt.hashSync('s3cret', 4).replace(/^\$2b\$/, '$2y$')}\n`);
  return file;
}

interface Tenants {
  secret: FixtureUpstream;
  good: FixtureUpstream;
  img: AddedImage;
  m: TestMirror;
  /** A digest nobody ever pulled, for comparing answers. */
  unseen: string;
}

/**
 * `secret.test` (client_auth) and `good.test` (anonymous) on two upstreams; alice has pulled
 * secret.test/library/alpine-test:1 completely (manifest by tag and by digest, config and layer).
 */
async function tenants(t: Test, extra: Partial<StartMirrorOptions> = {}): Promise<Tenants> {
  const secret = await fixture(t);
  const good = await fixture(t);
  const img = secret.addImage('library/alpine-test', { tag: '1', layers: [randomBytesSeeded(100_000, 31)] });
  const m = await mirror(t, {
    upstreams: [
      { namespace: 'secret.test', host: secret.host, clientAuthFile: await htpasswd(t) },
      { namespace: 'good.test', host: good.host },
    ],
    ...extra,
  });
  const base = `${m.url}/v2/secret.test/library/alpine-test`;
  t.equal((await request(`${base}/manifests/1`, { authorization: ALICE })).status, 200, 'alice pulls by tag');
  t.equal((await request(`${base}/manifests/${img.digest}`, { authorization: ALICE })).status, 200, 'and by digest');
  for (const d of [img.configDigest, ...img.layerDigests])
    t.equal((await request(`${base}/blobs/${d}`, { authorization: ALICE })).status, 200, 'and the blobs');
  await m.settled();
  return { secret, good, img, m, unseen: sha256(Buffer.from('never pulled by anyone')) };
}

t.test('a manifest pulled through a protected namespace is not served by digest through another namespace', async (t) => {
  const { good, img, m, unseen } = await tenants(t);
  const probe = `${m.url}/v2/good.test/library/nonexistent/manifests`;
  const leaked = await request(`${probe}/${img.digest}`);
  t.equal(leaked.status, 404, 'anonymous GET by digest through good.test: 404');
  t.equal(code(leaked), 'MANIFEST_UNKNOWN');
  t.notOk(leaked.body.includes(img.bytes), 'no manifest bytes in the answer');
  const never = await request(`${probe}/${unseen}`);
  t.same([never.status, never.body.toString()], [leaked.status, leaked.body.toString()], 'the same answer as for a digest never pulled');
  const head = await request(`${probe}/${img.digest}`, { method: 'HEAD' });
  t.same([head.status, head.digest], [404, null], 'HEAD does not confirm it either');
  t.ok(good.countRequests({ pathIncludes: `/manifests/${img.digest}` }) >= 1, "good.test's upstream was asked, and said no");
});

t.test('a blob pulled through a protected namespace is not served through another namespace', async (t) => {
  const { good, img, m, unseen } = await tenants(t);
  const layer = img.layerDigests[0] as string;
  const probe = `${m.url}/v2/good.test/library/nonexistent/blobs`;
  const leaked = await request(`${probe}/${layer}`);
  t.equal(leaked.status, 404, 'anonymous GET through good.test: 404');
  t.equal(code(leaked), 'BLOB_UNKNOWN');
  const never = await request(`${probe}/${unseen}`);
  t.same([never.status, never.body.toString()], [leaked.status, leaked.body.toString()], 'the same answer as for a digest never pulled');
  t.equal(good.countRequests({ pathIncludes: `/blobs/${layer}` }), 1, "good.test's upstream was asked once");
});

t.test('HEAD through another namespace does not reveal which blobs are cached', async (t) => {
  const { img, m, unseen } = await tenants(t);
  const probe = `${m.url}/v2/good.test/library/nonexistent/blobs`;
  for (const d of [img.configDigest, ...img.layerDigests]) {
    const cached = await request(`${probe}/${d}`, { method: 'HEAD' });
    const never = await request(`${probe}/${unseen}`, { method: 'HEAD' });
    t.same(
      [cached.status, cached.digest === null],
      [never.status, never.digest === null],
      `HEAD ${d.slice(0, 15)}: same answer as a digest never pulled`,
    );
    t.equal(cached.status, 404);
  }
});

t.test('during an outage of its upstream, a namespace is not served content it has no link to', async (t) => {
  const { good, img, m } = await tenants(t);
  await good.stop();
  const layer = img.layerDigests[0] as string;
  const blob = await request(`${m.url}/v2/good.test/library/nonexistent/blobs/${layer}`);
  t.ok(blob.status >= 500, `blob: ${blob.status}, as any miss while the upstream is down`);
  const manifest = await request(`${m.url}/v2/good.test/library/nonexistent/manifests/${img.digest}`);
  t.ok(manifest.status >= 500, `manifest: ${manifest.status}`);
  t.notOk(manifest.body.includes(img.bytes), 'no manifest bytes');
});

t.test('a repository whose upstream denies a blob does not get it from the cache, in the same namespace', async (t) => {
  const up = await fixture(t);
  const priv = up.addImage('team/private', { tag: '1', layers: [randomBytesSeeded(50_000, 41)] });
  up.addImage('team/public', { tag: '1', layers: [randomBytesSeeded(50_000, 42)] });
  const m = await mirror(t, { upstreams: [{ namespace: 'reg.test', host: up.host }] });
  const layer = priv.layerDigests[0] as string;
  t.equal((await request(`${m.url}/v2/reg.test/team/private/blobs/${layer}`)).status, 200, 'pulled through team/private');
  t.equal((await request(`${m.url}/v2/reg.test/team/private/manifests/${priv.digest}`)).status, 200);
  await m.settled();
  const blob = await request(`${m.url}/v2/reg.test/team/public/blobs/${layer}`);
  t.same([blob.status, code(blob)], [404, 'BLOB_UNKNOWN'], 'GET through team/public: 404');
  const head = await request(`${m.url}/v2/reg.test/team/public/blobs/${layer}`, { method: 'HEAD' });
  t.equal(head.status, 404, 'HEAD through team/public: 404');
  const manifest = await request(`${m.url}/v2/reg.test/team/public/manifests/${priv.digest}`);
  t.same([manifest.status, code(manifest)], [404, 'MANIFEST_UNKNOWN'], 'manifest by digest through team/public: 404');
});

t.test('a repository whose upstream holds the digest is served from the cache after one HEAD, without a second download', async (t) => {
  const up = await fixture(t);
  const img = up.addImage('team/a', { tag: '1', layers: [randomBytesSeeded(80_000, 51)] });
  const layer = img.layerDigests[0] as string;
  up.linkBlob('team/b', layer);
  const m = await mirror(t, { upstreams: [{ namespace: 'reg.test', host: up.host }] });
  t.equal((await request(`${m.url}/v2/reg.test/team/a/blobs/${layer}`)).status, 200, 'downloaded through team/a');
  await m.settled();
  up.clearRequests();
  for (let i = 0; i < 3; i++) {
    const r = await request(`${m.url}/v2/reg.test/team/b/blobs/${layer}`);
    t.equal(r.status, 200, `GET ${i + 1} through team/b`);
    t.equal(sha256(r.body), layer, 'the right bytes');
  }
  t.equal(up.blobGets(layer), 0, 'no second download');
  t.equal(
    up.countRequests({ method: 'HEAD', pathIncludes: `/team/b/blobs/${layer}` }),
    1,
    'one HEAD linked team/b, the warm requests after it asked nothing',
  );
  t.equal(contentRequests(up), 1, 'and nothing else reached the upstream');
});

/** Counts the link reads that reach storage. */
class CountingStorage extends FilesystemStorage {
  linkReads = 0;
  override async getLink(...args: Parameters<FilesystemStorage['getLink']>): ReturnType<FilesystemStorage['getLink']> {
    this.linkReads++;
    return super.getLink(...args);
  }
}

t.test('a warm pull through the repository that downloaded it asks the upstream nothing and reads no link from storage', async (t) => {
  const up = await fixture(t);
  const img = up.addImage('team/a', { tag: '1', layers: [randomBytesSeeded(40_000, 52)] });
  const root = await mkdtemp(join(tmpdir(), 'access-scope-warm-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const storage = new CountingStorage(root);
  const m = await mirror(t, { upstreams: [{ namespace: 'reg.test', host: up.host }], root, storage });
  const base = `${m.url}/v2/reg.test/team/a`;
  const pull = async () => {
    t.equal((await request(`${base}/manifests/1`)).status, 200);
    t.equal((await request(`${base}/manifests/${img.digest}`)).status, 200);
    for (const d of [img.configDigest, ...img.layerDigests]) {
      t.equal((await request(`${base}/blobs/${d}`, { method: 'HEAD' })).status, 200);
      t.equal((await request(`${base}/blobs/${d}`)).status, 200);
    }
  };
  await pull();
  await m.settled();
  const cold = contentRequests(up);
  up.clearRequests();
  storage.linkReads = 0;
  await pull();
  await pull();
  t.equal(contentRequests(up), 0, `warm pulls: no upstream request (the cold one made ${cold})`);
  t.equal(storage.linkReads, 0, 'and no link read from storage: the links are known in memory');
});

t.test("an upstream's 404 on re-validation drops its own link, never another namespace's copy", async (t) => {
  const layerBytes = randomBytesSeeded(120_000, 61);
  const upA = await fixture(t);
  const upB = await fixture(t);
  const a = upA.addImage('team/app', { tag: '1', layers: [layerBytes] });
  const b = upB.addImage('team/app', { tag: '1', layers: [layerBytes] });
  const layer = a.layerDigests[0] as string;
  t.equal(b.layerDigests[0], layer, 'the same layer in both upstreams');
  const clock = { ms: Date.now() };
  const m = await mirror(t, {
    upstreams: [
      { namespace: 'a.test', host: upA.host },
      { namespace: 'b.test', host: upB.host, blobInvalidationMs: 60_000 },
    ],
    now: () => clock.ms,
  });
  t.equal((await request(`${m.url}/v2/a.test/team/app/blobs/${layer}`)).status, 200, 'a.test downloads it');
  await m.settled();
  t.equal((await request(`${m.url}/v2/b.test/team/app/blobs/${layer}`)).status, 200, 'b.test is linked by a HEAD');
  // b.test's upstream (say, one its owner controls) now denies the blob, and its link expires.
  upB.deleteBlob(layer);
  clock.ms += 120_000;
  const purge = await request(`${m.url}/v2/b.test/team/app/blobs/${layer}`);
  t.same([purge.status, code(purge)], [404, 'BLOB_UNKNOWN'], 'b.test: 404 after its re-validation');
  await m.settled();
  t.ok(await m.storage.statBlob(layer), 'the bytes are still stored');
  upA.clearRequests();
  const served = await request(`${m.url}/v2/a.test/team/app/blobs/${layer}`);
  t.equal(served.status, 200, 'a.test still serves it');
  t.equal(sha256(served.body), layer);
  t.equal(upA.blobGets(layer), 0, 'from the cache: no new download');
  t.equal((await request(`${m.url}/v2/b.test/team/app/blobs/${layer}`)).status, 404, 'b.test stays refused');
  t.equal(await m.storage.getLink({ namespace: 'b.test', repository: 'team/app' }, 'blob', layer), undefined, "b.test's link is gone");
});

t.test('a link to content the collector deleted is a miss: the blob is downloaded again through that repository', async (t) => {
  const up = await fixture(t);
  const img = up.addImage('team/a', { tag: '1', layers: [randomBytesSeeded(30_000, 65)] });
  const layer = img.layerDigests[0] as string;
  const m = await mirror(t, { upstreams: [{ namespace: 'reg.test', host: up.host }] });
  t.equal((await request(`${m.url}/v2/reg.test/team/a/blobs/${layer}`)).status, 200);
  await m.settled();
  await m.storage.deleteBlob(layer); // as eviction or prune does
  const head = await request(`${m.url}/v2/reg.test/team/a/blobs/${layer}`, { method: 'HEAD' });
  t.equal(head.status, 200, 'HEAD: the upstream still has it');
  const again = await request(`${m.url}/v2/reg.test/team/a/blobs/${layer}`);
  t.equal(again.status, 200, 'GET: fetched again');
  t.equal(sha256(again.body), layer);
  t.equal(up.blobGets(layer), 2, 'a second download');
  await m.settled();
  t.ok(await m.storage.statBlob(layer), 'stored again');
});

t.test('a download running for one repository is not joined by a repository whose upstream denies the blob', async (t) => {
  const up = await fixture(t);
  const priv = up.addImage('team/private', { tag: '1', layers: [randomBytesSeeded(200_000, 71)] });
  up.addImage('team/public', { tag: '1' });
  const layer = priv.layerDigests[0] as string;
  up.setBlobFault(layer, { kind: 'slow', chunkSize: 16_384, delayMs: 50 });
  const m = await mirror(t, { upstreams: [{ namespace: 'reg.test', host: up.host }] });
  const owner = request(`${m.url}/v2/reg.test/team/private/blobs/${layer}`);
  // Wait until the download is under way.
  const deadline = Date.now() + 5000;
  while (up.blobGets(layer) === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  const intruder = await request(`${m.url}/v2/reg.test/team/public/blobs/${layer}`);
  t.same([intruder.status, code(intruder)], [404, 'BLOB_UNKNOWN'], 'the other repository is refused while the download runs');
  const done = await owner;
  t.equal(done.status, 200, 'the owner gets its blob');
  t.equal(sha256(done.body), layer);
  t.equal(up.blobGets(layer), 1, 'one download');
});

t.test('concurrent first requests of one repository share one upstream request, no HEAD', async (t) => {
  const up = await fixture(t);
  const img = up.addImage('team/a', { tag: '1', layers: [randomBytesSeeded(150_000, 72)] });
  const layer = img.layerDigests[0] as string;
  up.setBlobFault(layer, { kind: 'slow', chunkSize: 16_384, delayMs: 20 });
  const m = await mirror(t, { upstreams: [{ namespace: 'reg.test', host: up.host }] });
  const replies = await Promise.all(Array.from({ length: 6 }, () => request(`${m.url}/v2/reg.test/team/a/blobs/${layer}`)));
  t.same(
    replies.map((r) => [r.status, sha256(r.body)]),
    replies.map(() => [200, layer]),
  );
  t.equal(up.blobGets(layer), 1, 'one download');
  t.equal(up.countRequests({ method: 'HEAD' }), 0, 'no HEAD: the download itself showed access');
});

t.test('links survive a restart: the linked repository asks nothing, the others still must', async (t) => {
  const up = await fixture(t);
  const img = up.addImage('team/a', { tag: '1', layers: [randomBytesSeeded(30_000, 81)] });
  const layer = img.layerDigests[0] as string;
  up.linkBlob('team/b', layer);
  up.addImage('team/c', { tag: '1' });
  const root = await mkdtemp(join(tmpdir(), 'access-scope-restart-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const options: StartMirrorOptions = { upstreams: [{ namespace: 'reg.test', host: up.host }], root };
  const first = await startMirror(options);
  t.equal((await request(`${first.url}/v2/reg.test/team/a/blobs/${layer}`)).status, 200, 'downloaded through team/a');
  t.equal((await request(`${first.url}/v2/reg.test/team/a/manifests/${img.digest}`)).status, 200);
  t.equal((await request(`${first.url}/v2/reg.test/team/b/blobs/${layer}`)).status, 200, 'team/b linked by a HEAD');
  await first.close();

  const second = await mirror(t, options);
  up.clearRequests();
  t.equal((await request(`${second.url}/v2/reg.test/team/a/blobs/${layer}`)).status, 200, 'team/a after the restart');
  t.equal((await request(`${second.url}/v2/reg.test/team/a/manifests/${img.digest}`)).status, 200);
  t.equal((await request(`${second.url}/v2/reg.test/team/b/blobs/${layer}`)).status, 200, 'team/b after the restart');
  t.equal(contentRequests(up), 0, 'linked repositories: no upstream request');
  t.equal((await request(`${second.url}/v2/reg.test/team/c/blobs/${layer}`)).status, 404, 'team/c is still refused');
  t.equal((await request(`${second.url}/v2/reg.test/team/c/manifests/${img.digest}`)).status, 404);
});

t.test('offline, only linked content is served', async (t) => {
  const up = await fixture(t);
  const img = up.addImage('team/a', { tag: '1', layers: [randomBytesSeeded(30_000, 91)] });
  const root = await mkdtemp(join(tmpdir(), 'access-scope-offline-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const upstreams = [
    { namespace: 'reg.test', host: up.host },
    { namespace: 'other.test', host: up.host },
  ];
  const online = await startMirror({ upstreams, root });
  const base = `${online.url}/v2/reg.test/team/a`;
  t.equal((await request(`${base}/manifests/1`)).status, 200);
  for (const d of [img.configDigest, ...img.layerDigests]) t.equal((await request(`${base}/blobs/${d}`)).status, 200);
  await online.close();

  const offline = await mirror(t, { upstreams, root, offline: true });
  up.clearRequests();
  const layer = img.layerDigests[0] as string;
  t.equal((await request(`${offline.url}/v2/reg.test/team/a/manifests/${img.digest}`)).status, 200, 'linked manifest by digest');
  t.equal((await request(`${offline.url}/v2/reg.test/team/a/blobs/${layer}`)).status, 200, 'linked blob');
  t.equal((await request(`${offline.url}/v2/reg.test/team/a/blobs/${layer}`, { method: 'HEAD' })).status, 200, 'linked blob, HEAD');
  for (const repo of ['reg.test/team/other', 'other.test/team/a']) {
    const manifest = await request(`${offline.url}/v2/${repo}/manifests/${img.digest}`);
    t.same([manifest.status, code(manifest)], [404, 'MANIFEST_UNKNOWN'], `${repo}: manifest by digest refused`);
    const blob = await request(`${offline.url}/v2/${repo}/blobs/${layer}`);
    t.same([blob.status, code(blob)], [404, 'BLOB_UNKNOWN'], `${repo}: blob refused`);
    t.equal((await request(`${offline.url}/v2/${repo}/blobs/${layer}`, { method: 'HEAD' })).status, 404, `${repo}: blob HEAD refused`);
  }
  t.equal(up.requests.length, 0, 'offline: no upstream request');
});

t.test('import links what it loads to the repository it names, and to no other', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'access-scope-import-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const image = await makeImage({ format: 'oci', layers: 1, seed: 93 });
  const pack = tar.pack();
  const blobs = new Map<string, Buffer>([
    [image.manifestDigest, image.manifest],
    [image.configDigest, image.config],
    ...image.layers.map((l) => [l.digest, l.bytes] as [string, Buffer]),
  ]);
  for (const [d, b] of blobs) pack.entry({ name: `blobs/sha256/${d.slice(7)}`, size: b.length }, b);
  const index = {
    schemaVersion: 2,
    manifests: [{ mediaType: image.mediaType, digest: image.manifestDigest, size: image.manifest.length }],
  };
  pack.entry({ name: 'index.json' }, Buffer.from(JSON.stringify(index)));
  pack.entry({ name: 'oci-layout' }, Buffer.from('{"imageLayoutVersion":"1.0.0"}'));
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack as AsyncIterable<Buffer>) chunks.push(c);
  await writeFile(join(dir, 'image.tar'), Buffer.concat(chunks));

  const root = join(dir, 'cache');
  const storage = new FilesystemStorage(root);
  await storage.init();
  await importArchive(join(dir, 'image.tar'), { storage, as: 'reg.test/team/app:1' });

  const m = await mirror(t, { upstreams: [{ namespace: 'reg.test', host: '127.0.0.1:9' }], root, offline: true });
  const layer = image.layers[0]?.digest as string;
  t.equal((await request(`${m.url}/v2/reg.test/team/app/manifests/1`)).status, 200, 'by tag');
  t.equal((await request(`${m.url}/v2/reg.test/team/app/manifests/${image.manifestDigest}`)).status, 200, 'by digest');
  t.equal((await request(`${m.url}/v2/reg.test/team/app/blobs/${layer}`)).status, 200, 'its layer');
  t.equal(
    (await request(`${m.url}/v2/reg.test/team/other/manifests/${image.manifestDigest}`)).status,
    404,
    'not through another repository',
  );
  t.equal((await request(`${m.url}/v2/reg.test/team/other/blobs/${layer}`)).status, 404);
  const repo = { namespace: 'reg.test', repository: 'team/app' };
  t.ok(await storage.getLink(repo, 'manifest', image.manifestDigest), 'the manifest is linked in storage');
  for (const d of [image.configDigest, ...image.layers.map((l) => l.digest)])
    t.ok(await storage.getLink(repo, 'blob', d), `blob ${d.slice(0, 15)} is linked`);
});
