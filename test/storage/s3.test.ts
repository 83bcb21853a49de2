import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { CreateMultipartUploadCommand, HeadObjectCommand, ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import t from 'tap';
import { digestOf } from '../../src/oci/digest.js';
import {
  createS3Storage,
  normalizeEndpoint,
  resolveS3Options,
  S3Keys,
  type S3Storage,
  type S3StorageOptions,
} from '../../src/storage/s3/index.js';
import { fitToRange, parseContentRange } from '../../src/storage/s3/range.js';
import { startS3Server, type S3TestServer } from '../helpers/s3-server.js';
import { eventually } from '../helpers/eventually.js';
import { listAll, listDigests, putBlob, readAll, sha256, sleep, storageContract, writeAll } from './contract.js';

const MIB = 1024 * 1024;

const server = await startS3Server({ bucket: 'cache-bucket' });
t.teardown(() => server.close());

let prefixes = 0;
/** A storage on its own prefix of the shared bucket, so that subtests do not see each other. */
async function makeS3Storage(srv: S3TestServer, extra: Partial<S3StorageOptions> = {}): Promise<S3Storage> {
  const storage = createS3Storage({
    bucket: srv.bucket,
    endpoint: srv.endpoint,
    accessKeyId: srv.accessKeyId,
    secretAccessKey: srv.secretAccessKey,
    prefix: `t${process.pid}-${++prefixes}`,
    partSizeBytes: 5 * MIB,
    requestTimeoutMs: 5_000,
    ...extra,
  });
  await storage.init();
  return storage;
}

await storageContract(t, 's3', async () => {
  const storage = await makeS3Storage(server);
  return {
    storage,
    cleanup: () => storage.close(),
    pendingUploads: async () => (await server.pendingUploads(storage.keys.prefix)).length,
  };
});

t.test('options', async (t) => {
  const base = { bucket: 'b' };
  t.equal(resolveS3Options(base).region, 'us-east-1', 'region defaults to us-east-1');
  t.equal(resolveS3Options(base).endpoint, undefined, 'no endpoint: AWS');
  t.equal(resolveS3Options(base).forcePathStyle, false, 'virtual-hosted style on AWS');
  t.equal(
    resolveS3Options({ ...base, endpoint: 'minio.local:9000' }).endpoint,
    'https://minio.local:9000',
    'https assumed without a scheme',
  );
  t.equal(
    resolveS3Options({ ...base, endpoint: 'http://127.0.0.1:4569/' }).endpoint,
    'http://127.0.0.1:4569',
    'scheme kept, trailing slash dropped',
  );
  t.equal(resolveS3Options({ ...base, endpoint: 'http://127.0.0.1:4569' }).forcePathStyle, true, 'path style with an endpoint');
  t.equal(
    resolveS3Options({ ...base, endpoint: 'http://127.0.0.1:4569', forcePathStyle: false }).forcePathStyle,
    false,
    'unless told otherwise',
  );
  t.equal(resolveS3Options(base).partSizeBytes, 5 * MIB, 'part size defaults to 5 MiB');
  t.equal(resolveS3Options(base).queueSize, 1, 'queue size defaults to 1');
  t.throws(() => resolveS3Options({ ...base, partSizeBytes: 5 * MIB - 1 }), /partSizeBytes/, 'parts under 5 MiB refused');
  t.throws(() => resolveS3Options({ ...base, queueSize: 0 }), /queueSize/);
  t.throws(() => resolveS3Options({ bucket: '' }), /bucket/);
  t.throws(() => resolveS3Options({ ...base, accessKeyId: 'x' }), /both/, 'a key id without a secret is refused');
  t.throws(() => normalizeEndpoint('ftp://x'), /http or https/);
  t.equal(resolveS3Options(base).credentials, undefined, 'no keys: default credential chain');
  t.equal(resolveS3Options(base).prefix, '', 'prefix defaults to empty');
  t.equal(resolveS3Options({ ...base, prefix: '/mirror' }).prefix, 'mirror/', 'prefix normalised to end in /');
  t.equal(resolveS3Options({ ...base, prefix: 'a/b/' }).prefix, 'a/b/');
  t.throws(() => resolveS3Options({ ...base, prefix: 'a/../b' }), /prefix/);
});

t.test('key layout', async (t) => {
  const keys = new S3Keys('mirror/');
  const hex = 'a'.repeat(64);
  t.equal(keys.blob(`sha256:${hex}`), `mirror/blobs/sha256/${hex}`);
  t.equal(keys.blobMeta(`sha256:${hex}`), `mirror/blob-meta/sha256/${hex}`);
  t.equal(keys.manifest(`sha256:${hex}`), `mirror/manifests/sha256/${hex}`);
  t.equal(
    keys.tag({ namespace: 'docker.io', repository: 'library/nginx' }, 'latest'),
    'mirror/repositories/docker.io/library/nginx/_tags/latest',
  );
  t.equal(keys.tags({ namespace: 'localhost:5000', repository: 'app' }), 'mirror/repositories/localhost:5000/app/_tags/');
  t.equal(
    keys.link({ namespace: 'docker.io', repository: 'library/nginx' }, 'blob', `sha256:${hex}`),
    `mirror/links/docker.io/library/nginx/_blobs/sha256/${hex}`,
  );
  t.equal(
    keys.link({ namespace: 'docker.io', repository: 'library/nginx' }, 'manifest', `sha256:${hex}`),
    `mirror/links/docker.io/library/nginx/_manifests/sha256/${hex}`,
  );
  t.equal(keys.repositoryOfTagKey(`mirror/links/docker.io/library/nginx/_blobs/sha256/${hex}`), undefined, 'a link key is no tag record');
  t.equal(keys.digestOfBlobKey(`mirror/blobs/sha256/${hex}`), `sha256:${hex}`);
  t.equal(keys.digestOfBlobKey('mirror/blobs/sha256/nothex'), undefined);
  t.equal(keys.digestOfBlobKey(`other/blobs/sha256/${hex}`), undefined);
  t.throws(
    () => keys.tag({ namespace: 'docker.io', repository: '_tags' }, 'x'),
    /repository component/,
    'a repository component cannot start with _',
  );
});

t.test('ranged answers are checked against the request', async (t) => {
  const body = () => Readable.from([Buffer.from('0123456789')]);
  t.same(parseContentRange('bytes 2-5/10'), { start: 2, end: 5 });
  t.same(parseContentRange('bytes 2-5/*'), { start: 2, end: 5 });
  t.equal(parseContentRange('bytes */10'), undefined);
  t.equal((await readAll(fitToRange(body(), { start: 0, end: 9 }, 'bytes 0-9/10', 10))).toString(), '0123456789', 'exact');
  t.equal((await readAll(fitToRange(body(), { start: 0, end: 0 }, 'bytes 0-9/10', 10))).toString(), '0', 'more than asked is cut');
  t.equal(
    (await readAll(fitToRange(body(), { start: 0, end: 3 }, undefined, 10))).toString(),
    '0123',
    'an ignored Range from offset 0 is cut',
  );
  t.throws(() => fitToRange(body(), { start: 2, end: 3 }, undefined, 10), /whole object/, 'an ignored Range elsewhere is refused');
  t.throws(() => fitToRange(body(), { start: 2, end: 3 }, 'bytes 0-9/10', 10), /range 2-3/, 'a wrong offset is refused');
});

t.test('init fails with an error naming a missing bucket', async (t) => {
  const storage = createS3Storage({
    bucket: 'no-such-bucket',
    endpoint: server.endpoint,
    accessKeyId: server.accessKeyId,
    secretAccessKey: server.secretAccessKey,
  });
  t.teardown(() => storage.close());
  await t.rejects(storage.init(), /S3 bucket "no-such-bucket" at http:\/\/127\.0\.0\.1:\d+ is not usable: it does not exist/);
});

t.test('init aborts multipart uploads older than a day under its prefix, and only those', async (t) => {
  const storage = await makeS3Storage(server);
  t.teardown(() => storage.close());
  const create = async (key: string) =>
    (await storage.client.send(new CreateMultipartUploadCommand({ Bucket: server.bucket, Key: key }))).UploadId!;
  const stale = await create(storage.keys.blob(digestOf(Buffer.from('stale'))));
  const fresh = await create(storage.keys.blob(digestOf(Buffer.from('fresh'))));
  const elsewhere = await create(`elsewhere-${process.pid}/blobs/sha256/${'b'.repeat(64)}`);
  const twoDaysAgo = new Date(Date.now() - 2 * 24 * 3600 * 1000);
  await server.ageUpload(stale, twoDaysAgo);
  await server.ageUpload(elsewhere, twoDaysAgo);

  const listed = await storage.client.send(new ListMultipartUploadsCommand({ Bucket: server.bucket, Prefix: storage.keys.prefix }));
  t.same(new Set(listed.Uploads?.map((u) => u.UploadId)), new Set([stale, fresh]), 'the test server lists uploads by prefix');

  await storage.init();
  const left = (await server.pendingUploads()).map((u) => u.uploadId);
  t.notOk(left.includes(stale), 'the stale upload under the prefix is aborted');
  t.ok(left.includes(fresh), "a fresh upload (maybe another replica's) stays");
  t.ok(left.includes(elsewhere), 'uploads outside the prefix stay');
});

t.test('blobUrl gives a presigned URL that plain fetch can read', async (t) => {
  const storage = await makeS3Storage(server);
  t.teardown(() => storage.close());
  const data = randomBytes(200_000);
  const digest = await putBlob(storage, data);
  const url = await storage.blobUrl(digest, 60);
  t.ok(url, 'a URL');
  t.match(url!, /X-Amz-Signature=/, 'signed');
  const res = await fetch(url!);
  t.equal(res.status, 200);
  const body = Buffer.from(await res.arrayBuffer());
  t.ok(body.equals(data), 'the exact bytes');
  t.equal(await storage.blobUrl(digestOf(Buffer.from('absent')), 60), undefined, 'undefined for an absent blob');
});

t.test('touchBlob of a blob too big for CopyObject uses a side object', async (t) => {
  // The limit is 5 GiB; lowered here so a small blob takes that path.
  const storage = await makeS3Storage(server, { touchCopyMaxBytes: 10 });
  t.teardown(() => storage.close());
  const digest = await putBlob(storage, randomBytes(100));
  const before = (await storage.statBlob(digest))!.modified;
  await sleep(30);
  await storage.touchBlob(digest);
  const after = (await storage.statBlob(digest))!.modified;
  t.ok(after > before, 'statBlob sees the touch');
  const listed = (await listAll(storage)).find((b) => b.digest === digest);
  t.equal(listed?.modified.getTime(), after.getTime(), 'listBlobs sees it too');
  const head = () => storage.client.send(new HeadObjectCommand({ Bucket: server.bucket, Key: storage.keys.blobMeta(digest) }));
  await t.resolves(head(), 'the side object exists');
  await storage.deleteBlob(digest);
  await t.rejects(head(), 'deleteBlob removes the side object');
});

t.test('with S3 down, operations reject instead of hanging, and recover when it is back', async (t) => {
  const srv = await startS3Server({ bucket: 'down-bucket' });
  t.teardown(() => srv.close());
  const storage = await makeS3Storage(srv, { requestTimeoutMs: 1000 });
  t.teardown(() => storage.close());
  const kept = await putBlob(storage, randomBytes(1000));
  const repo = { namespace: 'docker.io', repository: 'library/nginx' };
  const record = { digest: kept, mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 1, checkedAt: new Date() };

  await srv.stop();
  const started = Date.now();
  await t.rejects(storage.statBlob(kept), 'statBlob');
  await t.rejects(storage.readBlob(kept), 'readBlob');
  await t.rejects(storage.getManifest(kept), 'getManifest');
  await t.rejects(storage.putManifest(kept, { mediaType: 'x', bytes: Buffer.from('{}'), fetchedAt: new Date() }), 'putManifest');
  await t.rejects(storage.getTag(repo, 'latest'), 'getTag');
  await t.rejects(storage.putTag(repo, 'latest', record), 'putTag');
  await t.rejects(storage.listTags(repo), 'listTags');
  await t.rejects(listAll(storage), 'listBlobs');
  await t.rejects(storage.touchBlob(kept), 'touchBlob');
  await t.rejects(storage.checkWritable(), 'checkWritable');
  await t.rejects(storage.init(), /S3 bucket "down-bucket"/, 'init');
  await t.rejects(storage.blobUrl(kept, 60), 'blobUrl');

  const small = randomBytes(1000);
  const w1 = await storage.createBlobWriter(digestOf(small));
  await w1.write(small);
  await t.rejects(w1.commit(), 'committing a small blob');
  await w1.abort();

  // A big blob: the upload fails while writing, so write() must reject rather than wait for a 'drain' that never comes.
  const big = randomBytes(40 * MIB);
  const w2 = await storage.createBlobWriter(digestOf(big));
  await t.rejects(writeAll(w2, big), 'writing a big blob');
  await t.rejects(w2.commit(), 'and then commit');
  await w2.abort();
  t.ok(Date.now() - started < 30_000, `all of it took ${Date.now() - started} ms`);

  await srv.start();
  t.equal((await storage.statBlob(kept))?.size, 1000, 'works again after restart');
  t.same(await listDigests(storage), [kept], 'nothing from the failed writes is visible');
});

t.test('a server crash mid-upload leaves nothing partial visible after restart', async (t) => {
  const srv = await startS3Server({ bucket: 'crash-bucket' });
  t.teardown(() => srv.close());
  const storage = await makeS3Storage(srv, { requestTimeoutMs: 1000 });
  t.teardown(() => storage.close());
  const data = randomBytes(14 * MIB);
  const digest = digestOf(data);
  const writer = await storage.createBlobWriter(digest);
  await writeAll(writer, data.subarray(0, 11 * MIB));
  t.ok(await eventually(async () => (await srv.pendingUploads()).length > 0), 'a multipart upload is under way');
  await srv.stop();
  await t.rejects(
    (async () => {
      await writeAll(writer, data.subarray(11 * MIB));
      await writer.commit();
    })(),
    'the write fails',
  );
  await writer.abort();
  await srv.start();
  t.equal(await storage.statBlob(digest), undefined, 'statBlob');
  t.equal(await storage.readBlob(digest), undefined, 'readBlob');
  t.same(await listDigests(storage), [], 'listBlobs');

  // The parts of the upload cut off by the crash are still there (AbortMultipartUpload could not be
  // sent). Once they are older than a day, init() removes them.
  const pending = await srv.pendingUploads();
  for (const u of pending) await srv.ageUpload(u.uploadId, new Date(Date.now() - 2 * 24 * 3600 * 1000));
  await storage.init();
  t.same(await srv.pendingUploads(), [], 'no upload left after init');

  // And the same blob can be written afresh.
  await putBlob(storage, data);
  t.equal(sha256(await readAll(await storage.readBlob(digest))), digest, 'rewritten whole');
});
