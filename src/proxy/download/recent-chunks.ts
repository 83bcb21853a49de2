/**
 * The newest chunks of a download with their offsets: every chunk not yet written to the spool (readers
 * can get it only here), plus up to `limit` bytes of those written, for readers that follow the download
 * closely. Chunks are kept as received: a view of one is handed out, never a copy.
 */
export class RecentChunks {
  private chunks: { start: number; buf: Buffer }[] = [];
  private bytes = 0;

  constructor(private readonly limit: number) {}

  /** The bytes held (written or not). */
  get size(): number {
    return this.bytes;
  }

  clear(): void {
    this.chunks = [];
    this.bytes = 0;
  }

  append(start: number, buf: Buffer): void {
    this.chunks.push({ start, buf });
    this.bytes += buf.length;
  }

  /** Drops the oldest chunks past the limit, never one that is not completely in the spool yet. */
  trim(written: number): void {
    for (;;) {
      const first = this.chunks[0];
      if (!first || this.bytes <= this.limit || first.start + first.buf.length > written) return;
      this.chunks.shift();
      this.bytes -= first.buf.length;
    }
  }

  /** A view of up to `length` bytes at `position` from one chunk, or undefined when not held. */
  slice(position: number, length: number): Buffer | undefined {
    const first = this.chunks[0];
    if (!first || position < first.start) return undefined;
    // Readers are near the head: search from the newest chunk back.
    for (let i = this.chunks.length - 1; i >= 0; i--) {
      const c = this.chunks[i] as { start: number; buf: Buffer };
      if (position >= c.start) {
        const offset = position - c.start;
        if (offset >= c.buf.length) return undefined;
        return c.buf.subarray(offset, Math.min(c.buf.length, offset + length));
      }
    }
    return undefined;
  }
}
