/**
 * The S3 blob writer (src/storage/s3/blob-writer.ts, lib-storage's Upload fed by write()): how a
 * written blob is cut into requests, that nothing is visible before commit, that the caller may reuse
 * a chunk once write() resolved, that no more than queueSize parts are in flight and write() waits
 * meanwhile, and that abort leaves no multipart upload. Against s3rver; which S3 commands are sent is
 * recorded with a middleware on the storage's client.
 */
import { ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import t from 'tap';
import { createS3Storage, type S3Storage } from '../../src/storage/s3/index.js';
import { randomBytesSeeded, sha256 } from '../fixtures/content.js';
import { eventually } from '../helpers/eventually.js';
import { startS3Server } from '../helpers/s3-server.js';

const MiB = 1024 * 1024;
const PART = 5 * MiB;

const s3 = await startS3Server({ bucket: 'upload-bucket' });
t.teardown(() => s3.close());

let prefixes = 0;
interface Recorded {
  storage: S3Storage;
  commands: string[];
  maxPartsInFlight: () => number;
}

/** `partDelayMs` holds each UploadPart back that long before sending it (a slow S3). */
async function makeStorage(queueSize = 2, partDelayMs = 0): Promise<Recorded> {
  const storage = createS3Storage({
    bucket: s3.bucket,
    endpoint: s3.endpoint,
    accessKeyId: s3.accessKeyId,
    secretAccessKey: s3.secretAccessKey,
    prefix: `upload-${process.pid}-${++prefixes}`,
    partSizeBytes: PART,
    queueSize,
    requestTimeoutMs: 5_000,
  });
  await storage.init();
  const commands: string[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  storage.client.middlewareStack.add(
    (next, context) => async (args) => {
      const name = context.commandName ?? '?';
      commands.push(name);
      if (name !== 'UploadPartCommand') return next(args);
      maxInFlight = Math.max(maxInFlight, ++inFlight);
      try {
        if (partDelayMs > 0) await new Promise((r) => setTimeout(r, partDelayMs));
        return await next(args);
      } finally {
        inFlight--;
      }
    },
    { step: 'initialize', name: 'testRecordCommands' },
  );
  return { storage, commands, maxPartsInFlight: () => maxInFlight };
}

async function readBack(storage: S3Storage, digest: string): Promise<Buffer> {
  const stream = await storage.readBlob(digest);
  const chunks: Buffer[] = [];
  for await (const c of stream!) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Writes `data` in chunks of `step` bytes and commits. */
async function put(storage: S3Storage, data: Buffer, step: number): Promise<string> {
  const digest = sha256(data);
  const writer = await storage.createBlobWriter(digest);
  for (let i = 0; i < data.length; i += step) await writer.write(data.subarray(i, i + step));
  await writer.commit();
  return digest;
}

t.test('a blob of exactly one part size is one PutObject', async (t) => {
  const { storage, commands } = await makeStorage();
  t.teardown(() => storage.close());
  const data = randomBytesSeeded(PART, 41);
  const digest = await put(storage, data, 64 * 1024);
  t.same(commands, ['PutObjectCommand'], 'no multipart upload');
  t.equal(sha256(await readBack(storage, digest)), digest);
});

t.test('one byte more than a part is a multipart upload of two parts', async (t) => {
  const { storage, commands } = await makeStorage();
  t.teardown(() => storage.close());
  const data = randomBytesSeeded(PART + 1, 42);
  const digest = await put(storage, data, 64 * 1024);
  t.same(commands, ['CreateMultipartUploadCommand', 'UploadPartCommand', 'UploadPartCommand', 'CompleteMultipartUploadCommand']);
  const back = await readBack(storage, digest);
  t.equal(back.length, data.length);
  t.equal(sha256(back), digest);
});

t.test('writes of odd sizes straddling part boundaries round-trip', async (t) => {
  const { storage, commands } = await makeStorage();
  t.teardown(() => storage.close());
  const data = randomBytesSeeded(3 * PART + 12_345, 43);
  const digest = await put(storage, data, 1 * MiB + 7);
  t.equal(commands.filter((c) => c === 'UploadPartCommand').length, 4, 'four parts');
  t.equal(sha256(await readBack(storage, digest)), digest);
});

t.test('a caller may overwrite its chunk as soon as write() resolved', async (t) => {
  const { storage } = await makeStorage();
  t.teardown(() => storage.close());
  const data = randomBytesSeeded(2 * PART + 999, 44);
  const digest = sha256(data);
  const writer = await storage.createBlobWriter(digest);
  const scratch = Buffer.alloc(256 * 1024);
  for (let i = 0; i < data.length; i += scratch.length) {
    const n = data.copy(scratch, 0, i, i + scratch.length);
    await writer.write(scratch.subarray(0, n));
    scratch.fill(0xee); // reused by the caller: must not reach S3
  }
  await writer.commit();
  t.equal(sha256(await readBack(storage, digest)), digest, 'the stored bytes are the written ones');
});

t.test('no more than queueSize parts are uploaded at once', async (t) => {
  const { storage, maxPartsInFlight } = await makeStorage(2);
  t.teardown(() => storage.close());
  const data = randomBytesSeeded(8 * PART, 45);
  const digest = await put(storage, data, 1 * MiB);
  t.equal(maxPartsInFlight(), 2, 'two in flight at most (and the writer did use both)');
  t.equal(sha256(await readBack(storage, digest)), digest);
});

t.test('nothing is sent for a small blob, and nothing is visible, before commit', async (t) => {
  const { storage, commands } = await makeStorage();
  t.teardown(() => storage.close());
  const data = randomBytesSeeded(PART - 1, 47);
  const digest = sha256(data);
  const writer = await storage.createBlobWriter(digest);
  for (let i = 0; i < data.length; i += MiB) await writer.write(data.subarray(i, i + MiB));
  await new Promise((r) => setTimeout(r, 200));
  t.same(commands, [], 'no request before commit');
  t.equal(await storage.statBlob(digest), undefined, 'not visible');
  const before = commands.length;
  await writer.commit();
  t.same(commands.slice(before), ['PutObjectCommand'], 'one PutObject at commit');
  t.equal(sha256(await readBack(storage, digest)), digest);
});

t.test('a multipart blob is not visible before commit', async (t) => {
  const { storage, commands } = await makeStorage();
  t.teardown(() => storage.close());
  const data = randomBytesSeeded(3 * PART, 48);
  const digest = sha256(data);
  const writer = await storage.createBlobWriter(digest);
  for (let i = 0; i < data.length; i += MiB) await writer.write(data.subarray(i, i + MiB));
  await new Promise((r) => setTimeout(r, 200));
  t.ok(commands.filter((c) => c === 'UploadPartCommand').length >= 2, 'parts went out while writing');
  t.notOk(commands.includes('CompleteMultipartUploadCommand'), 'not completed');
  t.equal(await storage.statBlob(digest), undefined, 'not visible');
  await writer.commit();
  t.equal(commands.at(-1), 'CompleteMultipartUploadCommand', 'completed at commit');
  t.equal(sha256(await readBack(storage, digest)), digest);
});

t.test('abort while a write waits for a free part leaves nothing behind', async (t) => {
  const { storage, commands } = await makeStorage(1, 1500);
  t.teardown(() => storage.close());
  const data = randomBytesSeeded(4 * PART, 46);
  const digest = sha256(data);
  const writer = await storage.createBlobWriter(digest);
  // Part 1 takes 1.5 s to go out: with a queue of one, the writes after it wait.
  let written = 0;
  const writing = (async () => {
    for (let i = 0; i < data.length; i += MiB) {
      await writer.write(data.subarray(i, i + MiB));
      written += MiB;
    }
  })();
  const outcome = writing.then(
    () => undefined,
    (e: unknown) => e as Error,
  );
  t.ok(await eventually(() => commands.includes('UploadPartCommand')), 'part 1 is on its way');
  await new Promise((r) => setTimeout(r, 100));
  const held = written;
  await new Promise((r) => setTimeout(r, 100));
  t.equal(written, held, 'the writer is held back while part 1 uploads');
  t.ok(held > PART && held < 2 * PART, `held at ${held / MiB} MiB: part 1 and at most the next part's start`);
  t.equal(commands.filter((c) => c === 'UploadPartCommand').length, 1, 'one part sent');
  await writer.abort();
  t.match((await outcome)?.message, /aborted/, 'the waiting write rejects');
  await t.rejects(writer.commit(), 'commit after abort rejects');
  await t.rejects(writer.write(Buffer.from('x')), 'write after abort rejects');
  t.equal(await storage.statBlob(digest), undefined, 'nothing visible');
  t.ok(commands.includes('AbortMultipartUploadCommand'), 'the multipart upload was aborted');
  const listed = await storage.client.send(new ListMultipartUploadsCommand({ Bucket: s3.bucket, Prefix: storage.keys.prefix }));
  t.same(listed.Uploads ?? [], [], 'ListMultipartUploads shows none pending');
  t.same(await s3.pendingUploads(storage.keys.prefix), [], 'and none is left in the server');
  await writer.abort();
  t.pass('a second abort is harmless');
});

t.test('abort of a small blob sends nothing', async (t) => {
  const { storage, commands } = await makeStorage();
  t.teardown(() => storage.close());
  const data = randomBytesSeeded(300_000, 49);
  const writer = await storage.createBlobWriter(sha256(data));
  await writer.write(data);
  await writer.abort();
  await new Promise((r) => setTimeout(r, 100));
  t.same(commands, [], 'no PutObject, no multipart upload');
  t.equal(await storage.statBlob(sha256(data)), undefined, 'nothing visible');
});
