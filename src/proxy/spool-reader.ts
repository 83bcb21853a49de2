import { Readable } from 'node:stream';
import type { BlobFill } from './blob-fill.js';

// Reads are thread-pool round trips, so large ones are much faster (one client: 64 KiB ~0.9 GB/s,
// 512 KiB ~2 GB/s); but each reader holds about two of them. The fill's readers share a budget, so one
// client reads 512 KiB at a time and a herd of 50 reads 64 KiB each.
const MIN_CHUNK = 64 * 1024;
const MAX_CHUNK = 512 * 1024;
const SHARED_BUDGET = 1024 * 1024;

function chunkFor(readers: number): number {
  return Math.max(MIN_CHUNK, Math.min(MAX_CHUNK, Math.floor(SHARED_BUDGET / Math.max(1, readers) / MIN_CHUNK) * MIN_CHUNK));
}

/**
 * Streams one client's view of a fill: bytes as they arrive, at this client's pace - from memory near
 * the head of the download, else positional reads of the spool file; nothing buffered beyond one chunk. The last byte of the requested range is held back
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
    super({ highWaterMark: MIN_CHUNK });
    this.pos = start;
    fill.retain();
    fill.readers++;
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
    const limit = verified ? Math.min(target, fill.received) : Math.min(target - 1, fill.received);
    if (this.pos < limit) {
      this.reading = true;
      const length = Math.min(chunkFor(fill.readers), limit - this.pos);
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
    if (verified && this.pos >= Math.min(target, fill.received)) {
      this.release();
      this.push(null);
    }
    // Otherwise wait for the fill's next 'change'.
  }

  private release(): void {
    if (this.released) return;
    this.released = true;
    this.fill.readers--;
    this.fill.off('change', this.onChange);
    this.fill.releaseRef();
  }
}
