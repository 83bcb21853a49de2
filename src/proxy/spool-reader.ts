import { Readable } from 'node:stream';
import type { BlobFill } from './blob-fill.js';

// Small enough that 50 slow clients of one blob hold little memory (a read in flight, the stream buffer,
// the socket's), large enough to keep syscalls cheap.
const CHUNK = 64 * 1024;

/**
 * Streams one client's view of a fill: bytes as they land in the spool file, at this client's pace
 * (positional reads, nothing buffered beyond one chunk). The last byte of the requested range is held back
 * until the whole blob is verified, so a client never completes a response whose blob failed its digest.
 */
export class SpoolReader extends Readable {
  private pos: number;
  private reading = false;
  /** Set by _read, cleared when push() reports a full buffer: backpressure from the client socket. */
  private wanted = false;
  private released = false;
  private readonly onChange = () => this.pump();

  /** `end` is exclusive; undefined reads to the end of the blob. */
  constructor(
    private readonly fill: BlobFill,
    start: number,
    private readonly end: number | undefined,
  ) {
    super({ highWaterMark: CHUNK });
    this.pos = start;
    fill.retain();
    fill.on('change', this.onChange);
  }

  override _read(): void {
    this.wanted = true;
    this.pump();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.release();
    callback(err);
  }

  private pump(): void {
    if (this.destroyed) return;
    const fill = this.fill;
    if (fill.failure) {
      this.destroy(fill.failure);
      return;
    }
    if (this.reading || !this.wanted) return;
    const target = this.end ?? fill.size ?? Number.POSITIVE_INFINITY;
    const verified = fill.verified;
    // Until verified, keep the range's final byte back (or, with unknown size, the end-of-stream).
    const limit = verified ? Math.min(target, fill.written) : Math.min(target - 1, fill.written);
    if (this.pos < limit) {
      this.reading = true;
      const length = Math.min(CHUNK, limit - this.pos);
      fill.read(this.pos, length).then(
        (buf) => {
          this.reading = false;
          if (this.destroyed) return;
          this.pos += buf.length;
          this.wanted = this.push(buf);
          this.pump();
        },
        (e: Error) => {
          this.reading = false;
          this.destroy(e);
        },
      );
      return;
    }
    if (verified && this.pos >= Math.min(target, fill.written)) {
      this.release();
      this.push(null);
    }
    // Otherwise wait for the fill's next 'change'.
  }

  private release(): void {
    if (this.released) return;
    this.released = true;
    this.fill.off('change', this.onChange);
    this.fill.releaseRef();
  }
}
