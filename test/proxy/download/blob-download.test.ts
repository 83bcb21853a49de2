/**
 * BlobDownload on its own: an in-memory source, an in-memory storage, a spool directory; no sockets.
 * Verdicts, what readers see, what memory holds, and what is left behind.
 */
import t from 'tap';
import { isOciError } from '../../../src/oci/errors.js';
import { readDownload } from '../../../src/proxy/download/spool-reader.js';
import { SpoolFile } from '../../../src/proxy/download/spool-file.js';
import { SpoolFullError } from '../../../src/proxy/download/spool-unavailable.js';
import { SpoolBudget } from '../../../src/proxy/download-limits.js';
import { randomBytesSeeded, sha256 } from '../../fixtures/content.js';
import { eventually } from '../../helpers/eventually.js';
import { BlobDownload, countedBody, kit, MiB, pushedBody, readAll } from './download-kit.js';

t.test('a matching digest: the reader gets every byte, the blob is committed, the spool removed', async (t) => {
  const k = await kit(t);
  const bytes = randomBytesSeeded(3 * MiB + 17, 1);
  const digest = sha256(bytes);
  const { source } = countedBody(bytes, 64 * 1024);
  const download = await BlobDownload.start(k.options(digest), source);
  const got = await readAll(readDownload(download));
  await download.settled();
  t.equal(sha256(got), digest, 'exact bytes');
  t.ok(download.verified, 'verified');
  t.ok(download.stored, 'stored');
  t.equal(k.storage.writers[0]?.state, 'committed', 'the upload committed');
  t.ok(k.storage.blobs.get(digest)?.bytes.equals(bytes), 'the storage holds the blob');
  t.ok(await eventually(async () => (await k.spoolFiles()).length === 0), 'the spool file is removed');
  t.equal(k.budget.bytes, 0, 'the spool budget is given back');
});

t.test('a digest mismatch: readers get an error, the writer is aborted, nothing is stored', async (t) => {
  const k = await kit(t);
  const bytes = randomBytesSeeded(2 * MiB, 2);
  const digest = sha256(Buffer.from('something else'));
  const { source } = countedBody(bytes, 64 * 1024);
  const download = await BlobDownload.start(k.options(digest), source);
  const reader = readDownload(download);
  const error = await readAll(reader).then(
    () => undefined,
    (e: unknown) => e,
  );
  await download.settled();
  t.ok(isOciError(error), 'the reader fails with an OCI error');
  t.match(String((error as Error).message), /does not match its digest/);
  t.ok(download.failure, 'the download failed');
  t.notOk(download.verified, 'not verified');
  t.notOk(download.stored, 'not stored');
  t.equal(k.storage.writers[0]?.state, 'aborted', 'the writer was aborted');
  t.equal(k.storage.blobs.size, 0, 'nothing stored');
  t.ok(await eventually(async () => (await k.spoolFiles()).length === 0), 'the spool file is removed');
});

t.test('a reader never gets the last byte before the verdict', async (t) => {
  const k = await kit(t);
  const bytes = randomBytesSeeded(100, 3);
  const { source, body } = pushedBody(bytes.length);
  const download = await BlobDownload.start(k.options(sha256(bytes)), source);
  const reader = readDownload(download);
  let got = 0;
  reader.on('data', (c: Buffer) => (got += c.length));
  body.write(bytes);
  t.ok(await eventually(() => got === 99), 'every byte but the last');
  await new Promise((r) => setTimeout(r, 50));
  t.equal(got, 99, 'the last byte waits for the verdict');
  body.end();
  await download.settled();
  t.ok(await eventually(() => got === 100), 'the last byte after it');
});

t.test('a truncated body (shorter than announced) fails the download', async (t) => {
  const k = await kit(t);
  const bytes = randomBytesSeeded(1000, 4);
  const { source, body } = pushedBody(2000);
  const download = await BlobDownload.start(k.options(sha256(bytes)), source);
  body.end(bytes);
  await download.settled();
  t.match(download.failure?.message, /truncated/);
  t.equal(k.storage.blobs.size, 0, 'nothing stored');
});

t.test('a source error mid-body fails the download with an OCI error value', async (t) => {
  const k = await kit(t);
  const bytes = randomBytesSeeded(1000, 5);
  const { source, body } = pushedBody(bytes.length);
  const download = await BlobDownload.start(k.options(sha256(bytes)), source);
  const reader = readDownload(download);
  const failed = readAll(reader).then(
    () => undefined,
    (e: unknown) => e,
  );
  body.write(bytes.subarray(0, 500));
  body.destroy(Object.assign(new Error('socket reset'), { code: 'ECONNRESET' }));
  await download.settled();
  t.ok(isOciError(download.failure), 'an OCI error value');
  t.ok(isOciError(await failed), 'the reader gets it');
  t.notOk(download.localWriteFailed, 'not blamed on the local disk');
});

t.test('a reader joining late reads the old bytes from the spool, then the recent ones from memory', async (t) => {
  const k = await kit(t);
  const bytes = randomBytesSeeded(8 * MiB, 6);
  const digest = sha256(bytes);
  const { source, body } = pushedBody(bytes.length);
  const download = await BlobDownload.start(k.options(digest), source);
  const positions: number[] = [];
  const original = SpoolFile.prototype.read;
  SpoolFile.prototype.read = function (this: SpoolFile, position: number, length: number, into?: Buffer) {
    // Readers read without a buffer of their own; the upload (S3-like storage) passes one.
    if (!into) positions.push(position);
    return original.call(this, position, length, into);
  };
  t.teardown(() => {
    SpoolFile.prototype.read = original;
  });
  // 6 MiB in, and written: the first MiBs are no longer held in memory.
  for (let at = 0; at < 6 * MiB; at += 256 * 1024) body.write(bytes.subarray(at, at + 256 * 1024));
  t.ok(await eventually(() => download.received === 6 * MiB), 'received');
  t.ok(download.heldBytes < 6 * MiB, `memory holds only the recent bytes (${download.heldBytes})`);
  const late = readAll(readDownload(download));
  for (let at = 6 * MiB; at < bytes.length; at += 256 * 1024) body.write(bytes.subarray(at, at + 256 * 1024));
  body.end();
  t.equal(sha256(await late), digest, 'the late reader gets exact bytes');
  t.ok(positions.length > 0 && positions[0] === 0, 'it started from the spool file');
  t.ok(Math.max(...positions) < 6 * MiB, `and read the rest from memory, not the file (${positions.map((p) => p / 1024).join(' ')})`);
});

t.test('backpressure: a store that does not take writes pauses the source, bounded', async (t) => {
  const k = await kit(t);
  k.storage.localWriterDir = k.spoolDir;
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  k.storage.writerHooks.beforeWrite = () => gate;
  const bytes = randomBytesSeeded(32 * MiB, 7);
  const digest = sha256(bytes);
  const { source, pulled } = countedBody(bytes, 64 * 1024);
  const download = await BlobDownload.start(k.options(digest), source);
  await new Promise((r) => setTimeout(r, 200));
  t.ok(pulled() < 4 * MiB, `the source was paused (${pulled()} bytes pulled of ${bytes.length})`);
  t.ok(download.heldBytes < 4 * MiB, `memory stays bounded (${download.heldBytes})`);
  open();
  await download.settled();
  t.ok(download.stored, 'then it completes and is committed (by the download: the spool is the writer file)');
  t.ok(k.storage.blobs.get(digest)?.bytes.equals(bytes), 'exact bytes stored');
  const writer = k.storage.writers[0] as { writes: number };
  t.ok(writer.writes < 32 * 16, `chunks are batched into fewer writes (${writer.writes})`);
});

t.test('a reader that stops reading neither stops the download nor makes memory grow', async (t) => {
  const k = await kit(t);
  const bytes = randomBytesSeeded(24 * MiB, 8);
  const digest = sha256(bytes);
  const { source } = countedBody(bytes, 64 * 1024);
  const download = await BlobDownload.start(k.options(digest), source);
  const slow = readDownload(download);
  let maxHeld = 0;
  const sample = setInterval(() => (maxHeld = Math.max(maxHeld, download.heldBytes)), 1);
  slow.pause();
  slow.read(0);
  await download.settled();
  clearInterval(sample);
  t.ok(download.stored, 'the download finished and stored without the reader');
  t.ok(slow.readableLength <= 1 * MiB, `the reader buffered little (${slow.readableLength})`);
  t.ok(maxHeld <= 4 * MiB, `memory held at most a few MiB (${maxHeld})`);
  t.equal(sha256(await readAll(slow)), digest, 'the reader then gets exact bytes from the spool');
});

t.test('a reader leaving mid-way: the download goes on, and the spool goes when the last reference does', async (t) => {
  const k = await kit(t);
  const bytes = randomBytesSeeded(4 * MiB, 9);
  const digest = sha256(bytes);
  const { source, body } = pushedBody(bytes.length);
  const download = await BlobDownload.start(k.options(digest), source);
  const release = download.hold();
  const leaving = readDownload(download);
  t.equal(download.readers, 1, 'one reader');
  body.write(bytes.subarray(0, MiB));
  await eventually(() => download.received === MiB);
  leaving.destroy();
  t.ok(await eventually(() => download.readers === 0), 'the reader left');
  body.end(bytes.subarray(MiB));
  await download.settled();
  t.ok(download.stored, 'stored all the same');
  t.equal((await k.spoolFiles()).length, 1, 'a handle still holds the spool');
  t.ok(k.budget.bytes > 0, 'and its share of the budget');
  release();
  t.ok(await eventually(async () => (await k.spoolFiles()).length === 0), 'released: the spool file is removed');
  t.equal(k.budget.bytes, 0, 'the budget is given back');
  release();
  t.equal(k.budget.bytes, 0, 'a second release changes nothing');
});

t.test('a full spool: the body comes back untouched, nothing is left behind', async (t) => {
  const k = await kit(t);
  const budget = new SpoolBudget(0);
  const bytes = randomBytesSeeded(1000, 10);
  const { source, body } = pushedBody(bytes.length);
  const error = await BlobDownload.start(k.options(sha256(bytes), { spool: budget }), source).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(error instanceof SpoolFullError, 'SpoolFullError');
  t.equal((error as SpoolFullError).source.body, body, 'carrying the unread body');
  t.equal((await k.spoolFiles()).length, 0, 'no spool file left');
  t.equal(k.storage.writers[0]?.state, 'aborted', 'the writer was aborted');
});

t.test('a source that fails before answering: its error, nothing left behind', async (t) => {
  const k = await kit(t);
  const error = await BlobDownload.start(k.options(sha256('x')), () => Promise.reject(new Error('refused'))).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.match((error as Error).message, 'refused');
  t.equal((await k.spoolFiles()).length, 0, 'no spool file left');
  t.equal(k.budget.bytes, 0, 'no budget held');
});
