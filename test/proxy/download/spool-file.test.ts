/** The spool file: write-behind batches, reads of written bytes, its end, and what close leaves behind. */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { SpoolFile } from '../../../src/proxy/download/spool-file.js';
import { randomBytesSeeded } from '../../fixtures/content.js';
import { MemoryStorage, type LocalFileWriter } from '../../helpers/memory-storage.js';

async function dir(t: Test): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'spool-file-test-'));
  t.teardown(() => rm(d, { recursive: true, force: true }));
  return d;
}

t.test('appended chunks are written, read back, and the own file is removed on close', async (t) => {
  const d = await dir(t);
  const spool = await SpoolFile.create(d, undefined);
  t.equal((await readdir(d)).length, 1, 'a temp file of its own');
  const bytes = randomBytesSeeded(300_000, 1);
  for (let at = 0; at < bytes.length; at += 1000) spool.append(bytes.subarray(at, at + 1000));
  t.ok(await spool.drain(), 'drained');
  t.equal(spool.written, bytes.length);
  const back = await spool.read(1000, 5000);
  t.ok(back.equals(bytes.subarray(1000, 6000)), 'exact bytes read back');
  const into = Buffer.alloc(10);
  const tail = await spool.read(bytes.length - 4, 10, into);
  t.ok(tail.equals(bytes.subarray(bytes.length - 4)), 'a read stops at the written end, into the given buffer');
  t.equal(tail.buffer, into.buffer, 'no allocation');
  await t.rejects(spool.read(bytes.length, 1), /beyond the written bytes/, 'nothing past it');
  await spool.close();
  t.same(await readdir(d), [], 'removed on close');
  await t.rejects(spool.read(0, 1), /spool closed/);
});

t.test('chunks appended while a write is in flight go out in one write', async (t) => {
  const d = await dir(t);
  const storage = new MemoryStorage();
  storage.localWriterDir = d;
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  storage.writerHooks.beforeWrite = () => gate;
  const writer = (await storage.createBlobWriter('sha256:x')) as LocalFileWriter;
  const spool = await SpoolFile.create(join(d, 'unused'), writer);
  let waits = 0;
  for (let i = 0; i < 100; i++) if (spool.append(Buffer.alloc(1000, i))) waits++;
  t.equal(waits, 0, 'no wait below the batch bound');
  t.equal(spool.written, 0, 'nothing written while the store holds');
  open();
  t.ok(await spool.drain());
  t.equal(spool.written, 100_000, 'all written');
  t.ok(writer.writes <= 2, `in at most two writes (${writer.writes})`);
  await spool.close();
  t.equal((await readdir(d)).length, 1, "the writer's file is the writer's to remove");
});

t.test('past the batch bound, append asks the caller to wait', async (t) => {
  const d = await dir(t);
  const storage = new MemoryStorage();
  storage.localWriterDir = d;
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  storage.writerHooks.beforeWrite = () => gate;
  const spool = await SpoolFile.create(d, await storage.createBlobWriter('sha256:x'));
  let wait: Promise<void> | undefined;
  let appended = 0;
  while (!wait && appended < 64) {
    wait = spool.append(Buffer.alloc(64 * 1024));
    appended++;
  }
  t.ok(wait, 'a promise to wait for');
  t.ok(appended * 64 * 1024 <= 1024 * 1024 + 2 * 64 * 1024, `after about a MiB (${appended} chunks)`);
  open();
  await wait;
  t.ok(await spool.drain());
  await spool.close();
});

t.test('a failed write is the spool failure; drain says so', async (t) => {
  const d = await dir(t);
  const storage = new MemoryStorage();
  storage.localWriterDir = d;
  const broken = Object.assign(new Error('no space'), { code: 'ENOSPC' });
  storage.writerHooks.beforeWrite = () => Promise.reject(broken);
  const spool = await SpoolFile.create(d, await storage.createBlobWriter('sha256:x'));
  spool.append(Buffer.alloc(10));
  t.notOk(await spool.drain(), 'not drained');
  t.equal(spool.failure, broken, 'the write error');
  t.equal(spool.written, 0);
  await spool.close();
});

t.test('seal and abandon are told to followers', async (t) => {
  const d = await dir(t);
  const spool = await SpoolFile.create(d, undefined);
  let changes = 0;
  spool.changed.listen(() => changes++);
  spool.append(Buffer.alloc(10));
  await spool.drain();
  t.equal(changes, 1, 'a write is a change');
  t.notOk(spool.sealed);
  spool.seal();
  t.ok(spool.sealed, 'sealed');
  t.equal(changes, 2, 'told');
  const other = await SpoolFile.create(d, undefined);
  const reason = new Error('mismatch');
  const next = other.changed.next();
  other.abandon(reason);
  await next;
  t.equal(other.abandoned, reason, 'abandoned, with the reason');
  t.notOk(other.sealed);
  await spool.close();
  await other.close();
  t.same(await readdir(d), []);
});

t.test('an unwritable directory: create fails and leaves nothing', async (t) => {
  const d = await dir(t);
  await t.rejects(SpoolFile.create(join(d, 'missing'), undefined), { code: 'ENOENT' });
  t.same(await readdir(d), []);
});
