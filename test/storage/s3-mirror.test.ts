/**
 * The proxy on the S3 backend (issue "S3 storage backend"): the mirror in this process with
 * createS3Storage against s3rver (test/helpers/s3-server.ts), the fixture upstream behind it; and two
 * mirror processes (the CLI `s3` subcommand) sharing one bucket. One behaviour per test; every test
 * uses its own key prefix of the one bucket, so they do not see each other's objects.
 *
 * What the bucket holds is checked with plain S3 calls (ListObjectsV2 / GetObject) against the key
 * layout documented in src/storage/s3/keys.ts; which S3 calls the mirror makes is recorded with a
 * middleware on the storage's own S3Client.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import t, { type Test } from 'tap';
import { createS3Storage, type S3Storage, type S3StorageOptions } from '../../src/storage/s3/index.js';
import { randomBytesSeeded, sha256 } from '../fixtures/content.js';
import { MEDIA_TYPES, startFixtureUpstream, type FixtureUpstream } from '../fixtures/upstream.js';
import { startMirror, type TestMirror } from '../helpers/mirror.js';
import { startMirrorProcess } from '../helpers/mirror-process.js';
import { s3CommandArgs, startS3Server } from '../helpers/s3-server.js';

const MiB = 1024 * 1024;
const REPO = 'library/app';
const ACCEPT = `${MEDIA_TYPES.ociManifest}, ${MEDIA_TYPES.ociIndex}`;

const s3 = await startS3Server({ bucket: 'cache-bucket' });
t.teardown(() => s3.close());

/** A plain client for looking into the bucket, independent of the backend under test. */
const inspector = new S3Client({
  region: 'us-east-1',
  endpoint: s3.endpoint,
  forcePathStyle: true,
  credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
});
t.teardown(() => inspector.destroy());

let prefixCount = 0;
function newPrefix(): string {
  return `mirror-${process.pid}-${++prefixCount}`;
}

function s3Storage(prefix: string, extra: Partial<S3StorageOptions> = {}): S3Storage {
  return createS3Storage({
    bucket: s3.bucket,
    endpoint: s3.endpoint,
    accessKeyId: s3.accessKeyId,
    secretAccessKey: s3.secretAccessKey,
    prefix,
    partSizeBytes: 5 * MiB,
    requestTimeoutMs: 5_000,
    ...extra,
  });
}

interface S3Call {
  command: string;
  key: string | undefined;
  range: string | undefined;
}

/** Records every command the storage's S3 client sends (name, key, Range). */
function recordCalls(storage: S3Storage): S3Call[] {
  const calls: S3Call[] = [];
  storage.client.middlewareStack.add(
    (next, context) => async (args) => {
      const input = args.input as { Key?: string; Range?: string };
      calls.push({ command: context.commandName ?? '?', key: input.Key, range: input.Range });
      return next(args);
    },
    { step: 'initialize', name: 'testRecordCalls' },
  );
  return calls;
}

async function startUpstream(t: Test): Promise<FixtureUpstream> {
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  return up;
}

async function startS3Mirror(
  t: Test,
  up: FixtureUpstream,
  storage: S3Storage,
  extra: { redirectSeconds?: number } = {},
): Promise<TestMirror> {
  const m = await startMirror({ upstreams: [{ namespace: up.host, host: up.host }], storage, ...extra });
  t.teardown(() => m.close());
  return m;
}

function blobUrl(base: string, up: FixtureUpstream, digest: string): string {
  return `${base}/v2/${REPO}/blobs/${digest}?ns=${up.host}`;
}

function manifestUrl(base: string, up: FixtureUpstream, ref: string): string {
  return `${base}/v2/${REPO}/manifests/${ref}?ns=${up.host}`;
}

async function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; body: Buffer }> {
  const res = await fetch(url, { headers, redirect: 'manual', signal: AbortSignal.timeout(30_000) });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}

/** Every key under the prefix, sorted. */
async function keysUnder(prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await inspector.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: `${prefix}/`, ContinuationToken: token }));
    for (const o of page.Contents ?? []) if (o.Key) keys.push(o.Key);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return keys.sort();
}

async function objectBytes(key: string): Promise<{ bytes: Buffer; contentType: string | undefined }> {
  const res = await inspector.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }));
  return { bytes: Buffer.from(await res.Body!.transformToByteArray()), contentType: res.ContentType };
}

const hexOf = (digest: string) => digest.slice('sha256:'.length);

/** Pulls the image by tag and every blob of it, and checks each answer. */
async function pullImage(
  t: Test,
  base: string,
  up: FixtureUpstream,
  image: { digest: string; configDigest: string; layerDigests: string[] },
  tag: string,
): Promise<void> {
  const m = await get(manifestUrl(base, up, tag), { accept: ACCEPT });
  t.equal(m.status, 200, `manifest ${tag}: 200`);
  t.equal(sha256(m.body), image.digest, `manifest ${tag}: the right bytes`);
  for (const d of [image.configDigest, ...image.layerDigests]) {
    const b = await get(blobUrl(base, up, d));
    t.equal(b.status, 200, `blob ${d.slice(0, 19)}: 200`);
    t.equal(sha256(b.body), d, `blob ${d.slice(0, 19)}: hashes to its digest`);
  }
}

t.test('a cold pull by tag stores the manifest, the tag record and the blobs under the documented keys', async (t) => {
  const up = await startUpstream(t);
  const layer = randomBytesSeeded(7 * MiB, 1); // more than one 5 MiB part: a multipart upload
  const image = up.addImage(REPO, { tag: 'v1', layers: [layer] });
  const prefix = newPrefix();
  const m = await startS3Mirror(t, up, s3Storage(prefix));

  await pullImage(t, m.url, up, image, 'v1');
  // The upload to S3 runs behind the download and completes after the clients' responses.
  await m.server.mirror.drain();

  const layerDigest = image.layerDigests[0]!;
  const tagKey = `${prefix}/repositories/${up.host}/${REPO}/_tags/v1`;
  const links = `${prefix}/links/${up.host}/${REPO}`;
  t.same(
    await keysUnder(prefix),
    [
      `${prefix}/blobs/sha256/${hexOf(image.configDigest)}`,
      `${prefix}/blobs/sha256/${hexOf(layerDigest)}`,
      `${prefix}/manifests/sha256/${hexOf(image.digest)}`,
      tagKey,
      `${links}/_blobs/sha256/${hexOf(image.configDigest)}`,
      `${links}/_blobs/sha256/${hexOf(layerDigest)}`,
      `${links}/_manifests/sha256/${hexOf(image.digest)}`,
    ].sort(),
    'exactly the blobs, the manifest, the tag record and the links of the repository: no temp or health keys left',
  );
  const layerObject = await objectBytes(`${prefix}/blobs/sha256/${hexOf(layerDigest)}`);
  t.equal(layerObject.bytes.length, layer.length, 'the layer object has the full size');
  t.equal(sha256(layerObject.bytes), layerDigest, 'the layer object hashes to its digest');
  const configObject = await objectBytes(`${prefix}/blobs/sha256/${hexOf(image.configDigest)}`);
  t.equal(sha256(configObject.bytes), image.configDigest, 'the config object hashes to its digest');
  const manifestObject = await objectBytes(`${prefix}/manifests/sha256/${hexOf(image.digest)}`);
  t.equal(sha256(manifestObject.bytes), image.digest, 'the manifest object holds the upstream bytes');
  t.equal(manifestObject.contentType, MEDIA_TYPES.ociManifest, 'stored with its media type as Content-Type');
  const tagRecord = JSON.parse((await objectBytes(tagKey)).bytes.toString('utf8')) as Record<string, unknown>;
  t.match(tagRecord, { digest: image.digest, mediaType: MEDIA_TYPES.ociManifest, size: image.bytes.length, checkedAt: String });
});

t.test('a warm pull is served from S3 with the upstream stopped', async (t) => {
  const up = await startUpstream(t);
  const image = up.addImage(REPO, { tag: 'v1', layers: [randomBytesSeeded(6 * MiB, 2), randomBytesSeeded(1000, 3)] });
  const prefix = newPrefix();
  const cold = await startS3Mirror(t, up, s3Storage(prefix));
  await pullImage(t, cold.url, up, image, 'v1');
  await cold.close();
  await up.stop();
  up.clearRequests();

  // A fresh mirror on the same bucket and prefix: nothing in memory, everything must come from S3.
  const storage = s3Storage(prefix);
  const calls = recordCalls(storage);
  const warm = await startS3Mirror(t, up, storage);
  await pullImage(t, warm.url, up, image, 'v1');
  const byDigest = await get(manifestUrl(warm.url, up, image.digest), { accept: ACCEPT });
  t.equal(byDigest.status, 200, 'manifest by digest: 200');
  t.equal(sha256(byDigest.body), image.digest, 'manifest by digest: the right bytes');
  const reads = calls.filter((c) => c.command === 'GetObjectCommand').map((c) => c.key);
  for (const d of [image.configDigest, ...image.layerDigests]) {
    t.ok(reads.includes(`${prefix}/blobs/sha256/${hexOf(d)}`), `blob ${d.slice(0, 19)} read from S3`);
  }
  t.ok(reads.includes(`${prefix}/manifests/sha256/${hexOf(image.digest)}`), 'manifest read from S3');
  t.ok(reads.includes(`${prefix}/repositories/${up.host}/${REPO}/_tags/v1`), 'tag record read from S3');
});

t.test('a Range GET of a cached blob answers 206 with the exact slice, the Range passed to S3', async (t) => {
  const up = await startUpstream(t);
  const data = randomBytesSeeded(3 * MiB, 4);
  const digest = up.addBlob(data);
  const prefix = newPrefix();
  const storage = s3Storage(prefix);
  const calls = recordCalls(storage);
  const m = await startS3Mirror(t, up, storage);
  t.equal(sha256((await get(blobUrl(m.url, up, digest))).body), digest, 'cold pull caches the blob');
  await m.server.mirror.drain();
  up.clearRequests();
  calls.length = 0;

  const start = 1_000_003;
  const end = 2_345_678;
  const res = await get(blobUrl(m.url, up, digest), { range: `bytes=${start}-${end}` });
  t.equal(res.status, 206);
  t.equal(res.headers.get('content-range'), `bytes ${start}-${end}/${data.length}`);
  t.equal(res.headers.get('content-length'), String(end - start + 1));
  t.ok(res.body.equals(data.subarray(start, end + 1)), 'exactly the requested bytes');
  const gets = calls.filter((c) => c.command === 'GetObjectCommand');
  t.same(
    gets,
    [{ command: 'GetObjectCommand', key: `${prefix}/blobs/sha256/${hexOf(digest)}`, range: `bytes=${start}-${end}` }],
    'one ranged GetObject',
  );

  const suffix = await get(blobUrl(m.url, up, digest), { range: 'bytes=-10' });
  t.equal(suffix.status, 206, 'a suffix range');
  t.ok(suffix.body.equals(data.subarray(data.length - 10)), 'the last 10 bytes');
  const first = await get(blobUrl(m.url, up, digest), { range: 'bytes=0-0' });
  t.equal(first.status, 206, 'a one-byte range at 0');
  t.ok(first.body.equals(data.subarray(0, 1)), 'exactly the first byte');
  t.equal(up.requests.length, 0, 'the upstream was not asked');
});

t.test('HEAD of a cached blob answers its size without reading the object', async (t) => {
  const up = await startUpstream(t);
  const data = randomBytesSeeded(2 * MiB, 5);
  const digest = up.addBlob(data);
  const prefix = newPrefix();
  const storage = s3Storage(prefix);
  const calls = recordCalls(storage);
  const m = await startS3Mirror(t, up, storage);
  await get(blobUrl(m.url, up, digest));
  await m.server.mirror.drain();
  up.clearRequests();
  calls.length = 0;

  const res = await fetch(blobUrl(m.url, up, digest), { method: 'HEAD' });
  t.equal(res.status, 200);
  t.equal(res.headers.get('content-length'), String(data.length), 'Content-Length is the blob size');
  t.equal(res.headers.get('docker-content-digest'), digest);
  t.same(
    calls.map((c) => c.command),
    ['HeadObjectCommand'],
    'only a HeadObject: no GetObject, nothing downloaded',
  );
  t.equal(up.requests.length, 0, 'the upstream was not asked');
});

t.test('HEAD of an uncached blob asks upstream with a HEAD and neither downloads nor stores it (only links it)', async (t) => {
  const up = await startUpstream(t);
  const data = randomBytesSeeded(2 * MiB, 10);
  const digest = up.addBlob(data);
  const prefix = newPrefix();
  const storage = s3Storage(prefix);
  const calls = recordCalls(storage);
  const m = await startS3Mirror(t, up, storage);
  calls.length = 0; // the start-up checks

  const res = await fetch(blobUrl(m.url, up, digest), { method: 'HEAD' });
  t.equal(res.status, 200);
  t.equal(res.headers.get('content-length'), String(data.length), 'the size upstream reported');
  t.equal(up.countRequests({ method: 'HEAD', pathIncludes: '/blobs/' }), 1, 'one upstream HEAD');
  t.equal(up.blobGets(digest), 0, 'no upstream GET');
  await m.server.mirror.drain();
  t.same(
    calls.map((c) => c.command).sort(),
    ['GetObjectCommand', 'HeadObjectCommand', 'PutObjectCommand'],
    'S3 asked for the link and whether it has the blob, and stored the link the upstream HEAD showed',
  );
  t.same(await keysUnder(prefix), [`${prefix}/links/${up.host}/${REPO}/_blobs/sha256/${hexOf(digest)}`], 'nothing stored but the link');
});

t.test('with redirect on, a cached blob GET answers 307 to a presigned S3 URL serving the blob', async (t) => {
  const up = await startUpstream(t);
  const data = randomBytesSeeded(1 * MiB + 17, 6);
  const digest = up.addBlob(data);
  const prefix = newPrefix();
  const m = await startS3Mirror(t, up, s3Storage(prefix), { redirectSeconds: 60 });

  const cold = await get(blobUrl(m.url, up, digest));
  await m.server.mirror.drain();
  t.equal(cold.status, 200, 'an uncached blob is streamed, not redirected');
  t.equal(sha256(cold.body), digest);

  const warm = await get(blobUrl(m.url, up, digest));
  t.equal(warm.status, 307, 'a cached blob is redirected');
  const location = warm.headers.get('location') ?? '';
  t.ok(location.startsWith(`${s3.endpoint}/${s3.bucket}/${prefix}/blobs/sha256/${hexOf(digest)}?`), 'to the blob object in the bucket');
  t.match(location, /X-Amz-Signature=/, 'presigned');
  t.match(location, /X-Amz-Expires=60(&|$)/, 'with the configured expiry');
  const direct = await get(location);
  t.equal(direct.status, 200, 'the URL works without credentials');
  t.equal(sha256(direct.body), digest, 'and serves the blob');

  const followed = await fetch(blobUrl(m.url, up, digest));
  t.equal(sha256(Buffer.from(await followed.arrayBuffer())), digest, 'a client following redirects gets the blob');
});

t.test('concurrent GETs of one uncached blob download it once from upstream', async (t) => {
  const up = await startUpstream(t);
  const data = randomBytesSeeded(12 * MiB, 7);
  const digest = up.addBlob(data);
  // About a second: the requests overlap the one download.
  up.setBlobFault(digest, { kind: 'slow', chunkSize: 256 * 1024, delayMs: 20 });
  const prefix = newPrefix();
  const storage = s3Storage(prefix);
  const m = await startS3Mirror(t, up, storage);

  const bodies = await Promise.all(Array.from({ length: 6 }, () => get(blobUrl(m.url, up, digest))));
  for (const [i, b] of bodies.entries()) {
    t.equal(b.status, 200, `client ${i}: 200`);
    t.equal(sha256(b.body), digest, `client ${i}: every byte`);
  }
  t.equal(up.blobGets(digest), 1, 'one upstream GET');
  await m.server.mirror.drain();
  t.equal((await storage.statBlob(digest))?.size, data.length, 'stored once, whole');
  t.same(await s3.pendingUploads(`${prefix}/`), [], 'no multipart upload left open');
});

t.test('two mirror processes sharing a bucket: the second serves what the first stored, without upstream', async (t) => {
  const up = await startUpstream(t);
  const image = up.addImage(REPO, { tag: 'v1', layers: [randomBytesSeeded(6 * MiB, 8), randomBytesSeeded(4096, 9)] });
  const prefix = newPrefix();
  const configYaml = `- namespace: ${up.host}\n  host: ${up.host}\n  tls: false\n`;
  const spoolA = await mkdtemp(join(tmpdir(), 's3-mirror-spool-a-'));
  const spoolB = await mkdtemp(join(tmpdir(), 's3-mirror-spool-b-'));
  t.teardown(() => rm(spoolA, { recursive: true, force: true }));
  t.teardown(() => rm(spoolB, { recursive: true, force: true }));
  const s3Args = s3CommandArgs(s3, prefix);

  const a = await startMirrorProcess({ root: spoolA, configYaml, args: ['--spool-dir', spoolA, ...s3Args] });
  t.teardown(() => a.kill());
  t.match(
    a.logs().find((l) => l['msg'] === 'listening'),
    { storage: 's3' },
    'mirror A runs on S3',
  );
  await pullImage(t, a.url, up, image, 'v1');
  await a.stop();

  // B with the upstream still up, to count what it asks upstream: nothing.
  up.clearRequests();
  const b = await startMirrorProcess({ root: spoolB, configYaml, args: ['--spool-dir', spoolB, ...s3Args] });
  t.teardown(() => b.kill());
  const byDigest = await get(manifestUrl(b.url, up, image.digest), { accept: ACCEPT });
  t.equal(byDigest.status, 200, 'B: manifest by digest');
  t.equal(sha256(byDigest.body), image.digest, 'B: the manifest bytes A stored');
  // manifest_invalidation_time is the default 14d: B trusts the tag record A wrote.
  const byTag = await get(manifestUrl(b.url, up, 'v1'), { accept: ACCEPT });
  t.equal(byTag.status, 200, 'B: manifest by tag, from the tag record A stored');
  t.equal(byTag.headers.get('docker-content-digest'), image.digest);
  t.notOk(byTag.headers.get('warning'), 'a fresh hit, not a stale fallback');
  for (const d of [image.configDigest, ...image.layerDigests]) {
    const res = await get(blobUrl(b.url, up, d));
    t.equal(res.status, 200, `B: blob ${d.slice(0, 19)}`);
    t.equal(sha256(res.body), d, `B: blob ${d.slice(0, 19)} hashes correctly`);
  }
  t.equal(up.requests.length, 0, 'B sent no request upstream');

  // And with the upstream gone, B still serves all of it from the bucket.
  await up.stop();
  for (const d of [image.configDigest, ...image.layerDigests]) {
    const res = await get(blobUrl(b.url, up, d));
    t.equal(sha256(res.body), d, `B, upstream down: blob ${d.slice(0, 19)}`);
  }
  const again = await get(manifestUrl(b.url, up, image.digest), { accept: ACCEPT });
  t.equal(sha256(again.body), image.digest, 'B, upstream down: manifest by digest');
  await b.stop();
});
