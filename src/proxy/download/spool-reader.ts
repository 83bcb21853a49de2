import { Readable } from 'node:stream';
import type { BufferFiller } from '../../storage/storage.js';

/** What a reader needs of the download it follows (BlobDownload). */
export interface FollowedDownload {
  /** The blob's size, when announced or known. */
  readonly size: number | undefined;
  /** Bytes received so far: readable from memory or the spool. */
  readonly received: number;
  /** Every byte is received and matched the digest: the last byte may be handed out. */
  readonly verified: boolean;
  /** Why the download failed, once it has. */
  readonly failure: Error | undefined;
  /** How many readers follow it now. */
  readonly readers: number;
  /** Counts this reader and calls `onChange` on progress until the returned leave() is called. */
  follow(onChange: () => void): () => void;
  /** Received bytes at `position`, possibly fewer than `length`. */
  read(position: number, length: number): Promise<Buffer>;
  /** Copies received bytes at `position` into `into`; how many (at least one). */
  copyTo(position: number, length: number, into: Buffer): Promise<number>;
}

// Reads are thread-pool round trips, so large ones are much faster; but each reader holds about two of
// them. A download's readers share a budget, so a lone client reads large chunks and a herd small ones
// (bench/: cold and herd tests).
const MIN_CHUNK = 64 * 1024;
const MAX_CHUNK = 512 * 1024;
const SHARED_BUDGET = 1024 * 1024;

function chunkFor(readers: number): number {
  return Math.max(MIN_CHUNK, Math.min(MAX_CHUNK, Math.floor(SHARED_BUDGET / Math.max(1, readers) / MIN_CHUNK) * MIN_CHUNK));
}

/**
 * A stream of bytes [start, end) of a download for one client: a reader that fills the sender's buffers
 * when others already read it (herds keep a flat memory), the plain stream for the first one (its views of
 * the arriving chunks need no copy).
 */
export function readDownload(download: FollowedDownload, start = 0, end?: number): Readable {
  return download.readers > 0 ? new FillingSpoolReader(download, start, end) : new SpoolReader(download, start, end);
}

/**
 * Streams one client's view of a download: bytes as they arrive, at this client's pace - from memory near
 * the head of the download, else positional reads of the spool file; nothing buffered beyond one chunk.
 * The last byte of the requested range is held back until the whole blob is verified, so a client never
 * completes a response whose blob failed its digest.
 */
export class SpoolReader extends Readable {
  /** Sized by how many clients read the download when this one joined (see chunkFor). */
  readonly bufferSize: number;
  private pos: number;
  /** fill() waiting for the download to move on. */
  private waiter: (() => void) | undefined;
  /** The consumer uses fill(): the stream side stays idle (no 'error' event nobody would listen to). */
  private filling = false;
  private reading = false;
  /** Set by _read, cleared when push() reports a full buffer: backpressure from the client socket. */
  private wanted = false;
  private readonly leave: () => void;
  private readonly onChange = () => {
    this.wake();
    this.pump();
  };

  /** `end` is exclusive; undefined reads to the end of the blob. */
  constructor(
    private readonly download: FollowedDownload,
    start: number,
    private readonly end: number | undefined,
  ) {
    super({ highWaterMark: MIN_CHUNK });
    this.pos = start;
    this.leave = download.follow(this.onChange);
    this.bufferSize = chunkFor(download.readers);
  }

  /**
   * The stream's bytes into the caller's buffer (instead of read()/'data'): a copy from memory near
   * the head, else one spool read; no allocation per chunk. Same holding back of the last byte.
   */
  protected async fillInto(buffer: Buffer): Promise<number> {
    this.filling = true;
    for (;;) {
      if (this.destroyed) throw new Error('spool reader closed');
      if (this.download.failure) throw this.download.failure;
      const { limit, done } = this.window();
      if (this.pos < limit) {
        const n = await this.download.copyTo(this.pos, Math.min(buffer.length, limit - this.pos), buffer);
        this.pos += n;
        return n;
      }
      if (done) {
        this.release();
        return 0;
      }
      await new Promise<void>((resolve) => (this.waiter = resolve));
    }
  }

  protected rewindBy(bytes: number): void {
    this.pos -= bytes;
  }

  /**
   * How far this reader may read now, and whether it has everything. Until the blob is verified, the
   * range's final byte is kept back (or, with unknown size, the end of the stream).
   */
  private window(): { limit: number; done: boolean } {
    const download = this.download;
    const target = this.end ?? download.size ?? Number.POSITIVE_INFINITY;
    const available = Math.min(target, download.received);
    if (!download.verified) return { limit: Math.min(target - 1, download.received), done: false };
    return { limit: available, done: this.pos >= available };
  }

  override _read(): void {
    this.wanted = true;
    this.pump();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    // A fill() waiting for the download wakes up and sees the reader closed.
    this.wake();
    this.release();
    callback(err);
  }

  private pump(): void {
    if (this.destroyed || this.filling) return;
    const download = this.download;
    if (download.failure) {
      this.destroy(download.failure);
      return;
    }
    if (this.reading || !this.wanted) return;
    const { limit, done } = this.window();
    if (this.pos < limit) {
      this.reading = true;
      const length = Math.min(chunkFor(download.readers), limit - this.pos);
      download.read(this.pos, length).then(
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
    if (done) {
      this.release();
      this.push(null);
    }
    // Otherwise wait for the download's next change.
  }

  private wake(): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.();
  }

  private release(): void {
    this.leave();
  }
}

/**
 * A spool reader that also fills the sender's buffers (BufferFiller). For clients joining a download
 * others already read: each then holds two pooled buffers instead of allocating per chunk, which keeps a
 * herd's memory flat. A lone client keeps the plain stream, whose views of the arriving chunks need no
 * copy, which is faster for one cold pull (bench/: herd and cold tests).
 */
export class FillingSpoolReader extends SpoolReader implements BufferFiller {
  fill(buffer: Buffer): Promise<number> {
    return this.fillInto(buffer);
  }

  /** The bytes stay in the spool (the reader holds its reference until its end), so they can be read again. */
  rewind(bytes: number): void {
    this.rewindBy(bytes);
  }
}
