/**
 * The readers of a download against a fake download (the FollowedDownload interface): what part of the
 * blob a reader may hand out when, and how it lets go of the download.
 */
import t from 'tap';
import { FillingSpoolReader, readDownload, type FollowedDownload } from '../../../src/proxy/download/spool-reader.js';
import { eventually } from '../../helpers/eventually.js';

/** A download held in one buffer: the test moves `received` and gives the verdict. */
class FakeDownload implements FollowedDownload {
  size: number | undefined;
  received = 0;
  verified = false;
  failure: Error | undefined;
  readers = 0;
  left = 0;
  private readonly listeners = new Set<() => void>();

  constructor(readonly bytes: Buffer) {
    this.size = bytes.length;
  }

  follow(onChange: () => void): () => void {
    this.readers++;
    this.listeners.add(onChange);
    let following = true;
    return () => {
      if (!following) return;
      following = false;
      this.readers--;
      this.left++;
      this.listeners.delete(onChange);
    };
  }

  async read(position: number, length: number): Promise<Buffer> {
    if (position >= this.received) throw new Error('read past received');
    return this.bytes.subarray(position, Math.min(this.received, position + length));
  }

  async copyTo(position: number, length: number, into: Buffer): Promise<number> {
    const view = await this.read(position, Math.min(length, into.length));
    view.copy(into);
    return view.length;
  }

  /** Moves the download on and wakes the readers. */
  advance(change: Partial<Pick<FakeDownload, 'received' | 'verified' | 'failure'>>): void {
    Object.assign(this, change);
    for (const l of this.listeners) l();
  }
}

function collect(stream: NodeJS.ReadableStream): { bytes: () => number; done: Promise<Buffer | Error> } {
  const chunks: Buffer[] = [];
  let n = 0;
  const done = new Promise<Buffer | Error>((resolve) => {
    stream.on('data', (c: Buffer) => {
      chunks.push(Buffer.from(c));
      n += c.length;
    });
    stream.on('end', () => resolve(Buffer.concat(chunks)));
    stream.on('error', (e: Error) => resolve(e));
  });
  return { bytes: () => n, done };
}

const blob = Buffer.from('0123456789abcdefghij');

t.test('the first reader is a plain stream; one joining others fills buffers', async (t) => {
  const d = new FakeDownload(blob);
  const first = readDownload(d);
  const second = readDownload(d);
  t.notOk(first instanceof FillingSpoolReader, 'first: plain stream');
  t.ok(second instanceof FillingSpoolReader, 'second: fills buffers');
  t.equal(d.readers, 2);
  first.destroy();
  second.destroy();
  t.ok(await eventually(() => d.readers === 0), 'both left');
});

t.test('the last byte of the range waits for the verdict', async (t) => {
  const d = new FakeDownload(blob);
  const r = collect(readDownload(d));
  d.advance({ received: blob.length });
  t.ok(await eventually(() => r.bytes() === blob.length - 1), 'all but the last byte');
  await new Promise((resolve) => setTimeout(resolve, 30));
  t.equal(r.bytes(), blob.length - 1, 'still held back');
  d.advance({ verified: true });
  t.same(await r.done, blob, 'all bytes after the verdict');
  t.equal(d.readers, 0, 'the reader left at its end');
});

t.test('a range ends where asked and only its last byte waits', async (t) => {
  const d = new FakeDownload(blob);
  const r = collect(readDownload(d, 5, 10));
  d.advance({ received: 12 });
  t.ok(await eventually(() => r.bytes() === 4), 'bytes 5-8');
  d.advance({ verified: true, received: blob.length });
  t.same(await r.done, blob.subarray(5, 10));
});

t.test('a failed download destroys the reader with its error and lets go of it', async (t) => {
  const d = new FakeDownload(blob);
  const r = collect(readDownload(d));
  d.advance({ received: 4 });
  const failure = new Error('digest mismatch');
  d.advance({ failure });
  t.equal(await r.done, failure, 'the download error');
  t.ok(await eventually(() => d.readers === 0 && d.left === 1), 'left once');
});

t.test('a buffer-filling reader: fill() waits for bytes, rewind() gives them again, 0 at the end', async (t) => {
  const d = new FakeDownload(blob);
  readDownload(d).destroy();
  const leader = readDownload(d);
  const r = readDownload(d) as FillingSpoolReader;
  leader.destroy();
  const buf = Buffer.alloc(8);
  const pending = r.fill(buf);
  d.advance({ received: 6 });
  t.equal(await pending, 6, 'the six received bytes');
  t.equal(buf.subarray(0, 6).toString(), '012345');
  r.rewind(2);
  d.advance({ received: blob.length, verified: true });
  t.equal(await r.fill(buf), 8);
  t.equal(buf.toString(), '456789ab', 'from the rewound position');
  let n = 0;
  while ((await r.fill(buf)) > 0) n++;
  t.ok(n > 0, 'the rest');
  t.equal(d.readers, 0, 'the reader left at its end');
});

t.test('a reader destroyed mid-way leaves the download once', async (t) => {
  const d = new FakeDownload(blob);
  const reader = readDownload(d);
  collect(reader);
  d.advance({ received: 10 });
  reader.destroy();
  t.ok(await eventually(() => d.left === 1 && d.readers === 0));
  d.advance({ received: blob.length, verified: true });
  await new Promise((resolve) => setTimeout(resolve, 10));
  t.equal(d.left, 1, 'not again');
});
