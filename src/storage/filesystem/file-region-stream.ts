import { read } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { BufferFiller } from '../storage.js';

/** Large reads: each one is a thread-pool round trip, so small ones cap throughput. */
const READ_SIZE = 512 * 1024;

/**
 * Bytes [start, end) of an open file (end Infinity: to the end of the file), as a stream or, for a
 * sender with its own buffers, through fill(). Closes the file when destroyed or ended.
 */
export class FileRegionStream extends Readable implements BufferFiller {
  private position: number;

  constructor(
    private readonly file: FileHandle,
    start: number,
    private readonly end: number,
  ) {
    super({ highWaterMark: READ_SIZE });
    this.position = start;
  }

  fill(buffer: Buffer): Promise<number> {
    const length = Math.min(buffer.length, this.end - this.position);
    if (length <= 0) return Promise.resolve(0);
    return new Promise((resolve, reject) => {
      // The callback API: no promise and no FileHandle bookkeeping per read on the hot path.
      read(this.file.fd, buffer, 0, length, this.position, (err, n) => {
        if (err) return reject(err);
        if (n === 0 && this.end !== Infinity) return reject(new Error('blob file is shorter than its recorded size'));
        this.position += n;
        resolve(n);
      });
    });
  }

  rewind(bytes: number): void {
    this.position -= bytes;
  }

  override _read(size: number): void {
    const buffer = Buffer.allocUnsafe(Math.max(size, READ_SIZE));
    this.fill(buffer).then(
      (n) => this.push(n === 0 ? null : buffer.subarray(0, n)),
      (e: Error) => this.destroy(e),
    );
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.file.close().then(
      () => callback(error),
      () => callback(error),
    );
  }
}
