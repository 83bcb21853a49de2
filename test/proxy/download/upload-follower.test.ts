/** The upload to a remote storage follows the spool and commits only after the download's verdict (the seal). */
import t from 'tap';
import { ChangeSignal } from '../../../src/proxy/download/change-signal.js';
import { uploadSpool, type UploadedSpool } from '../../../src/proxy/download/upload-follower.js';
import { eventually } from '../../helpers/eventually.js';
import { MemoryBlobWriter, MemoryStorage } from '../../helpers/memory-storage.js';

/** A spool in memory: the test writes bytes and gives the end. */
class FakeSpool implements UploadedSpool {
  readonly changed = new ChangeSignal();
  written = 0;
  sealed = false;
  abandoned: Error | undefined;
  constructor(readonly bytes: Buffer) {}

  async read(position: number, length: number, into: Buffer): Promise<Buffer> {
    const n = this.bytes.copy(into, 0, position, Math.min(this.written, position + length));
    return into.subarray(0, n);
  }

  set(change: Partial<Pick<FakeSpool, 'written' | 'sealed' | 'abandoned'>>): void {
    Object.assign(this, change);
    this.changed.notify();
  }
}

async function writer(): Promise<{ storage: MemoryStorage; w: MemoryBlobWriter }> {
  const storage = new MemoryStorage();
  const w = (await storage.createBlobWriter('sha256:abc')) as MemoryBlobWriter;
  return { storage, w };
}

const bytes = Buffer.from('the bytes of a blob, uploaded behind the download');

t.test('copies the spool as it is written and commits only once it is sealed', async (t) => {
  const { storage, w } = await writer();
  const spool = new FakeSpool(bytes);
  const upload = uploadSpool(spool, w);
  spool.set({ written: 10 });
  t.ok(await eventually(() => w.chunks.length === 1), 'the first bytes are uploaded at once');
  spool.set({ written: bytes.length });
  t.ok(await eventually(() => Buffer.concat(w.chunks).length === bytes.length), 'then the rest');
  await new Promise((r) => setTimeout(r, 30));
  t.equal(w.state, 'open', 'every byte is uploaded, but no commit before the verdict');
  spool.set({ sealed: true });
  await upload;
  t.equal(w.state, 'committed', 'committed after it');
  t.same(storage.blobs.get('sha256:abc')?.bytes, bytes, 'exact bytes stored');
});

t.test('an abandoned spool aborts the upload and rejects with the reason', async (t) => {
  const { storage, w } = await writer();
  const spool = new FakeSpool(bytes);
  const upload = uploadSpool(spool, w);
  spool.set({ written: 20 });
  const reason = new Error('digest mismatch');
  spool.set({ abandoned: reason });
  await t.rejects(upload, reason);
  t.equal(w.state, 'aborted', 'aborted');
  t.equal(storage.blobs.size, 0, 'nothing stored');
});

t.test('a store failing its commit: aborted, rejected', async (t) => {
  const { storage, w } = await writer();
  storage.writerHooks.commitError = new Error('S3 down');
  const spool = new FakeSpool(bytes);
  spool.set({ written: bytes.length, sealed: true });
  await t.rejects(uploadSpool(spool, w), /S3 down/);
  t.equal(w.state, 'aborted');
});
