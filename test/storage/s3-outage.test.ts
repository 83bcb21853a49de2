/**
 * S3 going away under the proxy (issue "S3 storage backend"): S3 write failures must degrade to
 * uncached streaming (the fill spools locally, clients get every byte from upstream), and nothing
 * partial may become visible in the bucket. The S3 server (s3rver in a child process) is killed with
 * SIGKILL and restarted on the same port and data directory (test/helpers/s3-server.ts).
 *
 * Each test has its own S3 server, so stopping it does not disturb the others.
 */
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { eventually } from '../helpers/eventually.js';
import t, { type Test } from 'tap';
import { createS3Storage, type S3Storage } from '../../src/storage/s3/index.js';
import { randomBytesSeeded, sha256 } from '../fixtures/content.js';
import { MEDIA_TYPES, startFixtureUpstream, type FixtureUpstream } from '../fixtures/upstream.js';
import { startMirror, type TestMirror } from '../helpers/mirror.js';
import { startS3Server, type S3TestServer } from '../helpers/s3-server.js';

const MiB = 1024 * 1024;
const REPO = 'library/app';
const ACCEPT = `${MEDIA_TYPES.ociManifest}, ${MEDIA_TYPES.ociIndex}`;
const DAY_MS = 24 * 3600 * 1000;

interface Setup {
  s3: S3TestServer;
  up: FixtureUpstream;
  storage: S3Storage;
  m: TestMirror;
  prefix: string;
  blobUrl(digest: string): string;
  manifestUrl(ref: string): string;
}

function s3Storage(s3: S3TestServer, prefix: string): S3Storage {
  return createS3Storage({
    bucket: s3.bucket,
    endpoint: s3.endpoint,
    accessKeyId: s3.accessKeyId,
    secretAccessKey: s3.secretAccessKey,
    prefix,
    partSizeBytes: 5 * MiB,
    // Short, so that requests to a dead S3 fail fast (connections are refused anyway).
    requestTimeoutMs: 2_000,
  });
}

async function setup(t: Test, bucket: string): Promise<Setup> {
  const s3 = await startS3Server({ bucket });
  t.teardown(() => s3.close());
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  const prefix = `outage-${process.pid}`;
  const storage = s3Storage(s3, prefix);
  const m = await startMirror({ upstreams: [{ namespace: up.host, host: up.host }], storage });
  t.teardown(() => m.close());
  return {
    s3,
    up,
    storage,
    m,
    prefix,
    blobUrl: (digest) => `${m.url}/v2/${REPO}/blobs/${digest}?ns=${up.host}`,
    manifestUrl: (ref) => `${m.url}/v2/${REPO}/manifests/${ref}?ns=${up.host}`,
  };
}

/** GET and read the whole body; a cut transfer is reported in `error`, not thrown. */
async function pull(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; body: Buffer; error?: string }> {
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(60_000) });
  const chunks: Buffer[] = [];
  try {
    for await (const c of res.body ?? []) chunks.push(Buffer.from(c as Uint8Array));
  } catch (e) {
    return { status: res.status, headers: res.headers, body: Buffer.concat(chunks), error: (e as Error).message };
  }
  return { status: res.status, headers: res.headers, body: Buffer.concat(chunks) };
}

async function keysUnder(s: Setup): Promise<string[]> {
  const page = await s.storage.client.send(new ListObjectsV2Command({ Bucket: s.s3.bucket, Prefix: `${s.prefix}/` }));
  return (page.Contents ?? []).map((o) => o.Key ?? '').sort();
}

/** Back-dates every pending multipart upload past the stale age and runs init(), which aborts them. */
async function sweepUploads(s: Setup): Promise<void> {
  for (const u of await s.s3.pendingUploads()) await s.s3.ageUpload(u.uploadId, new Date(Date.now() - 2 * DAY_MS));
  await s.storage.init();
}

t.test('S3 killed mid-download: the client still gets every byte, and no partial object appears', async (t) => {
  const s = await setup(t, 'mid-bucket');
  const data = randomBytesSeeded(30 * MiB, 31);
  const digest = s.up.addBlob(data);
  // About 2.5 s for the whole blob: S3 dies while the multipart upload is under way.
  s.up.setBlobFault(digest, { kind: 'slow', chunkSize: 256 * 1024, delayMs: 20 });

  let finished = false;
  const download = pull(s.blobUrl(digest)).finally(() => (finished = true));
  t.ok(await eventually(async () => (await s.s3.pendingUploads(`${s.prefix}/`)).length > 0, 10_000), 'a multipart upload is under way');
  await s.s3.stop();
  t.notOk(finished, 'the download was still running when S3 died');

  const res = await download;
  t.equal(res.status, 200);
  t.equal(res.error, undefined, 'the transfer was not cut');
  t.equal(res.body.length, data.length, 'every byte');
  t.equal(sha256(res.body), digest, 'the body hashes to the digest');
  t.equal(s.up.blobGets(digest), 1, 'one upstream download served it');
  await s.m.server.mirror.drain();

  await s.s3.start();
  t.equal(await s.storage.statBlob(digest), undefined, 'statBlob: the blob is not in the bucket');
  t.equal(await s.storage.readBlob(digest), undefined, 'readBlob: nothing to read');
  t.same(
    (await keysUnder(s)).filter((k) => !k.startsWith(`${s.prefix}/links/`)),
    [],
    "no object under the prefix but the repository's link (written when the upstream answered)",
  );
  // The upload cut off by the crash could not be aborted (S3 was down); init() removes it once stale.
  t.comment(`multipart uploads left by the crash: ${(await s.s3.pendingUploads()).length}`);
  await sweepUploads(s);
  t.same(await s.s3.pendingUploads(), [], 'no multipart upload left after init');

  // S3 is back: the next pull downloads the blob again and stores it whole.
  s.up.setBlobFault(digest, undefined);
  const again = await pull(s.blobUrl(digest));
  t.equal(sha256(again.body), digest, 'the next pull gets the blob');
  t.equal(s.up.blobGets(digest), 2, 'from upstream, as it was not cached');
  await s.m.server.mirror.drain();
  t.equal((await s.storage.statBlob(digest))?.size, data.length, 'and stores it');
  const stored = await s.storage.readBlob(digest);
  const chunks: Buffer[] = [];
  for await (const c of stored!) chunks.push(c as Buffer);
  t.equal(sha256(Buffer.concat(chunks)), digest, 'the stored object hashes to the digest');
  t.same(await s.s3.pendingUploads(), [], 'its upload completed');
});

t.test('with S3 down before any pull, blobs are streamed uncached and manifests still work', async (t) => {
  const s = await setup(t, 'down-bucket');
  const image = s.up.addImage(REPO, { tag: 'v1', layers: [randomBytesSeeded(12 * MiB, 32), randomBytesSeeded(3000, 33)] });
  await s.s3.stop();

  const started = Date.now();
  const byTag = await pull(s.manifestUrl('v1'), { accept: ACCEPT });
  t.equal(byTag.status, 200, 'manifest by tag: 200');
  t.equal(sha256(byTag.body), image.digest, 'manifest by tag: the upstream bytes');
  const byDigest = await pull(s.manifestUrl(image.digest), { accept: ACCEPT });
  t.equal(byDigest.status, 200, 'manifest by digest: 200');
  t.equal(sha256(byDigest.body), image.digest, 'manifest by digest: the upstream bytes');
  for (const d of [image.configDigest, ...image.layerDigests]) {
    const res = await pull(s.blobUrl(d));
    t.equal(res.status, 200, `blob ${d.slice(0, 19)}: 200`);
    t.equal(res.error, undefined, `blob ${d.slice(0, 19)}: not cut`);
    t.equal(sha256(res.body), d, `blob ${d.slice(0, 19)}: every byte`);
  }
  t.ok(Date.now() - started < 30_000, `the pulls took ${Date.now() - started} ms`);

  const ready = await fetch(`${s.m.url}/readyz`);
  t.equal(ready.status, 503, 'readiness reports the storage down');

  // Uncached: pulling a blob again downloads it again.
  const layer = image.layerDigests[0]!;
  const again = await pull(s.blobUrl(layer));
  t.equal(sha256(again.body), layer, 'a second pull works too');
  t.equal(s.up.blobGets(layer), 2, 'and went upstream again: nothing was cached');

  await s.s3.start();
  t.same(await keysUnder(s), [], 'nothing was stored while S3 was down');
  t.same(await s.s3.pendingUploads(), [], 'no multipart upload was left behind');
  t.equal((await fetch(`${s.m.url}/readyz`)).status, 200, 'ready again once S3 is back');
});
