import { EventEmitter, once } from 'node:events';
import { open, rm, type FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { createDigester, parseDigest } from '../oci/digest.js';
import { OciError } from '../oci/errors.js';
import { transportError } from '../upstream/errors.js';
import type { BlobWriter, Storage } from '../storage/storage.js';
import { tempPath } from '../storage/filesystem/atomic-file.js';
import { writeAllAt } from '../storage/filesystem/write-all.js';
import type { SpoolBudget } from './download-limits.js';
import type { ProxyObserver } from './events.js';
import { FillingSpoolReader, SpoolReader } from './spool-reader.js';

export interface FillSource {
  size: number | undefined;
  body: Readable;
}

export interface FillOptions {
  digest: string;
  namespace: string;
  storage: Storage;
  /** Local directory for spool files when the storage writer has no local file of its own (S3). */
  spoolDir: string;
  log: Logger;
  observer: ProxyObserver | undefined;
  /** The most bytes the body may bring (--max-blob-size, or less when the size is known); past it the download fails. */
  maxBytes: number;
  /** The bound of every download's local files together (--max-spool-size). */
  spool: SpoolBudget;
  /** False: stream the blob to its readers through a spool of its own, store nothing (what an owner replica stores). */
  store?: boolean | undefined;
}

/** No local spool file could be created (disk full, unwritable temp dir); carries the unread upstream body. */
export class SpoolUnavailableError extends Error {
  constructor(
    readonly source: FillSource,
    cause: unknown,
  ) {
    super(`cannot create a spool file: ${errMessage(cause)}`, { cause });
  }
}

/** The spool is at its bound (--max-spool-size): not a disk failure; the body is streamed uncached. */
export class SpoolFullError extends SpoolUnavailableError {
  constructor(source: FillSource) {
    super(source, new Error('the spool is at --max-spool-size'));
  }
}

/** Upstream bytes allowed to wait for the spool write before the download pauses. */
const MAX_BATCH_BYTES = 1024 * 1024;

/** How much of the spool already written stays in memory for readers at the head. */
const RECENT_BYTES = 2 * 1024 * 1024;

/**
 * The newest chunks of a download with their offsets: every chunk not yet written to the spool (readers
 * can get it only here), plus up to `limit` bytes of those written.
 */
class RecentChunks {
  private chunks: { start: number; buf: Buffer }[] = [];
  private bytes = 0;

  constructor(private readonly limit: number) {}

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

/** How much of the spool a remote upload reads at a time (one reused buffer per upload). */
const UPLOAD_READ_BYTES = 1024 * 1024;

/**
 * One upstream download of one blob, shared by every request that wants it while it runs.
 *
 * Bytes are hashed and written to a local spool file; readers follow the spool at their own pace.
 * With the filesystem backend the spool is the storage's own temp file, renamed into place on a digest
 * match. With a remote backend (S3) a separate upload reads the spool behind the download, so a slow or
 * hanging store never holds clients back, and completes only after the digest matched. On a mismatch
 * every reader is aborted and nothing is stored. The fill never depends on its readers: the first
 * client going away does not stop it. What bounds it instead: a body longer than its Content-Length or
 * than `maxBytes` fails it, and so does an upstream silent for its read_timeout (the connection's body
 * timeout, upstream/dispatcher.ts), with or without clients.
 */
export class BlobFill extends EventEmitter {
  readonly digest: string;
  size: number | undefined;
  /** Bytes received from upstream and hashed: readers may read this far (memory or spool). */
  received = 0;
  /** Bytes in the spool file. */
  written = 0;
  /** The whole blob was received and matched its digest (it may still be on its way to the spool). */
  verified = false;
  /** Every byte is in the spool file. */
  private spooled = false;
  failure: Error | undefined;
  /** Whether the verified blob was committed to storage. */
  stored = false;
  /** Clients reading the spool now (they size their reads by it). */
  readers = 0;
  /** The bytes not yet in the spool and the last few MiB written, for readers that follow the download closely. */
  private readonly recent = new RecentChunks(RECENT_BYTES);
  /** The fill failed because the local disk refused a write (ENOSPC, EACCES, EIO), not because of upstream. */
  localWriteFailed = false;
  /** The body may not bring more: its Content-Length, else maxBytes. */
  private limit = 0;
  /** What this download holds of the spool budget, given back when its files are gone. */
  private spoolCharge = 0;

  private refs = 1;
  private readFd: FileHandle | undefined;
  private spoolFd: FileHandle | undefined;
  private spoolPath: string | undefined;
  /** The storage writer whose temp file is the spool (filesystem), committed by the download itself. */
  private localWriter: BlobWriter | undefined;
  /** The remote storage's writer (S3) until its upload starts, once the upstream answered. */
  private remoteWriter: BlobWriter | undefined;
  /** True when the spool is our own temp file rather than the filesystem writer's. */
  private ownSpool = false;
  /** The background upload of the spool to a remote storage, when there is one. */
  private upload: Promise<void> | undefined;
  private readonly done: Promise<void>;

  private constructor(private readonly options: FillOptions) {
    super();
    this.setMaxListeners(0);
    this.digest = options.digest;
    let resolveDone!: () => void;
    this.done = new Promise((r) => (resolveDone = r));
    this.once('settled', () => resolveDone());
  }

  /**
   * Prepares the spool and the storage writer, then starts pumping `source` in the background.
   * A storage that cannot take the blob (EACCES, ENOSPC, S3 down) degrades to a spool-only fill.
   */
  static async start(options: FillOptions, request: Promise<FillSource>): Promise<BlobFill> {
    const fill = new BlobFill(options);
    // The spool files are created while the upstream request is on its way: one less wait per blob.
    const answer = request.then(
      (source) => ({ source }),
      (error: unknown) => ({ error }),
    );
    let spoolError: unknown;
    try {
      await fill.prepare();
    } catch (e) {
      spoolError = e ?? new Error('spool preparation failed');
    }
    const got = await answer;
    if ('error' in got || spoolError !== undefined || !fill.admit(got.source.size)) {
      await fill.localWriter?.abort().catch(() => undefined);
      await fill.remoteWriter?.abort().catch(() => undefined);
      await fill.cleanupFiles();
      if ('error' in got) throw got.error;
      // The upstream body is untouched: the caller may still stream it to its client, uncached.
      if (spoolError !== undefined) throw new SpoolUnavailableError(got.source, spoolError);
      throw new SpoolFullError(got.source);
    }
    fill.size = got.source.size;
    fill.limit = Math.min(got.source.size ?? Number.POSITIVE_INFINITY, options.maxBytes);
    fill.startUpload();
    void fill.pump(got.source.body);
    return fill;
  }

  /** A stream of bytes [start, end) for one client; one that can fill buffers when others read too. */
  reader(start = 0, end?: number): Readable {
    return this.readers > 0 ? new FillingSpoolReader(this, start, end) : new SpoolReader(this, start, end);
  }

  /** Resolves when the download has verified or failed, and any storage upload has finished. */
  settled(): Promise<void> {
    return this.done;
  }

  /**
   * Bytes [position, position + length) of the spool, possibly fewer. Readers near the head of the
   * download (most of a herd) get views of the chunks just written, shared by all of them: no read and no
   * allocation per client. Others read the file.
   */
  async read(position: number, length: number, into?: Buffer): Promise<Buffer> {
    if (!into) {
      const recent = this.recent.slice(position, length);
      if (recent) return recent;
    }
    const fd = this.readFd;
    if (!fd) throw new Error('spool closed');
    // Past `written` the bytes are only in memory, and `recent` keeps them until they are written.
    if (position >= this.written) throw new Error('spool read beyond the written bytes');
    length = Math.min(length, this.written - position);
    const buf = into && into.length >= length ? into : Buffer.allocUnsafe(length);
    const { bytesRead } = await fd.read(buf, 0, length, position);
    return bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
  }

  /**
   * Copies bytes at `position` into `into` (at most `length`): what memory holds from there, or else
   * one read of the spool. Resolves with how many bytes were copied (at least one).
   */
  async copyTo(position: number, length: number, into: Buffer): Promise<number> {
    let n = 0;
    while (n < length) {
      const view = this.recent.slice(position + n, length - n);
      if (!view) break;
      view.copy(into, n);
      n += view.length;
    }
    if (n > 0) return n;
    const got = await this.read(position, Math.min(length, into.length), into);
    if (got.length === 0) throw new Error('spool file shorter than its written bytes');
    return got.length;
  }

  /** The namespace whose upstream this download reads from (the status page). */
  get namespace(): string {
    return this.options.namespace;
  }

  retain(): void {
    this.refs++;
  }

  releaseRef(): void {
    this.refs--;
    if (this.refs === 0) void this.cleanupFiles();
  }

  /** Takes a share of the spool budget for a body of this size (unknown: charged as it arrives), if it has room. */
  private admit(size: number | undefined): boolean {
    if (!this.options.spool.admits) return false;
    this.chargeSpool(size ?? 0);
    return true;
  }

  private chargeSpool(bytes: number): void {
    this.spoolCharge += bytes;
    this.options.spool.charge(bytes);
  }

  private async prepare(): Promise<void> {
    const { storage, digest, log, observer } = this.options;
    let writer: BlobWriter | undefined;
    try {
      if (this.options.store !== false) writer = await storage.createBlobWriter(digest);
    } catch (e) {
      observer?.storageError?.('create_blob');
      log.warn({ digest, err: errMessage(e) }, 'storage cannot take the blob; serving it uncached');
    }
    if (writer?.localPath) {
      this.localWriter = writer;
      this.spoolPath = writer.localPath;
    } else {
      this.spoolPath = tempPath(this.options.spoolDir);
      this.ownSpool = true;
      this.spoolFd = await open(this.spoolPath, 'wx');
    }
    this.readFd = await open(this.spoolPath, 'r');
    if (writer && !writer.localPath) this.remoteWriter = writer;
  }

  /** Starts copying the spool to the remote storage, behind the download. */
  private startUpload(): void {
    const writer = this.remoteWriter;
    if (!writer) return;
    this.remoteWriter = undefined;
    this.retain();
    this.upload = this.runUpload(writer).finally(() => this.releaseRef());
  }

  private async pump(body: Readable): Promise<void> {
    const { digest, log } = this.options;
    const expected = parseDigest(digest);
    const hash = createDigester(expected.algorithm);
    let outcome: 'failed' | 'digest_mismatch' = 'failed';
    // Write-behind: chunks that arrive while a write is in flight are batched into the next write, so
    // reading upstream and writing the spool overlap and small chunks cost one syscall per batch.
    let batch: Buffer[] = [];
    let batchBytes = 0;
    let writing: Promise<void> | undefined;
    const flush = async (): Promise<void> => {
      while (batch.length > 0) {
        const chunks = batch;
        const bytes = batchBytes;
        batch = [];
        batchBytes = 0;
        await this.writeChunks(chunks, bytes);
        this.written += bytes;
        this.recent.trim(this.written);
        this.emit('change');
      }
    };
    let writeError: unknown;
    const startFlush = (): Promise<void> => {
      writing ??= flush()
        .catch((e: unknown) => {
          writeError ??= e;
        })
        .finally(() => (writing = undefined));
      return writing;
    };
    try {
      for await (const chunk of body) {
        if (writeError !== undefined) throw writeError;
        const buf = chunk as Buffer;
        // Checked before any reader sees the bytes: an endless or lying body ends here.
        if (this.received + buf.length > this.limit) throw this.tooLong();
        if (this.size === undefined) this.chargeSpool(buf.length);
        hash.update(buf);
        // Readers get the chunk now, from memory; the spool write runs beside them.
        this.recent.append(this.received, buf);
        this.received += buf.length;
        this.emit('change');
        batch.push(buf);
        batchBytes += buf.length;
        const pending = startFlush();
        // Bound what waits in memory: past a few MiB, wait for the disk.
        if (batchBytes >= MAX_BATCH_BYTES) await pending;
      }
      if (writeError !== undefined) throw writeError;
      if (this.size !== undefined && this.received !== this.size) {
        throw new OciError('UPSTREAM_ERROR', 'upstream blob body was truncated', {
          detail: { digest, expected: this.size, received: this.received },
        });
      }
      const actual = `${expected.algorithm}:${hash.digest('hex')}`;
      if (actual !== digest) {
        outcome = 'digest_mismatch';
        throw new OciError('UPSTREAM_ERROR', 'upstream blob does not match its digest', { detail: { digest, received: actual } });
      }
      this.size = this.received;
      // Readers get their last byte now, from memory if the disk is behind. The last spool writes and the
      // commit (fdatasync + rename, ~0.3 s for 256 MiB) run behind them; until they are done the fill stays
      // in flight, so new requests join it instead of missing.
      this.verified = true;
      this.emit('change');
      while (writing) await writing;
      if (writeError === undefined) await startFlush();
      if (writeError === undefined) {
        this.spooled = true;
        this.emit('change');
        await this.commitLocal();
      } else {
        // Every byte is verified and in memory for the readers: the disk failing now only loses the caching.
        this.localWriteFailed = true;
        this.options.observer?.storageError?.('write_blob');
        log.warn({ digest, err: errMessage(writeError) }, 'spool write failed after the download verified; blob served uncached');
        await this.localWriter?.abort().catch(() => undefined);
        this.localWriter = undefined;
        this.emit('change');
      }
    } catch (e) {
      body.destroy();
      if (writeError !== undefined && e === writeError) {
        this.localWriteFailed = true;
        this.options.observer?.storageError?.('write_blob');
      }
      // A transport error (reset, timeout) becomes an OCI error value, so a client that has not yet
      // received headers gets a 502/503/504 rather than a 500.
      this.failure = transportError(this.options.namespace, e);
      this.options.observer?.fillFinished?.(this.options.namespace, outcome);
      log.warn({ digest, err: errMessage(e), received: this.received }, 'blob download failed; nothing stored');
      await this.localWriter?.abort().catch(() => undefined);
      this.localWriter = undefined;
      this.emit('change');
    } finally {
      await this.spoolFd?.close().catch(() => undefined);
      this.spoolFd = undefined;
      await this.upload;
      if (!this.failure) this.options.observer?.fillFinished?.(this.options.namespace, this.stored ? 'stored' : 'uncached');
      this.emit('settled');
      this.releaseRef();
    }
  }

  private tooLong(): OciError {
    const { digest, namespace, maxBytes } = this.options;
    return this.size !== undefined && this.size <= maxBytes
      ? new OciError('UPSTREAM_ERROR', 'upstream blob body is longer than its Content-Length', { detail: { namespace, digest, size: this.size } })
      : new OciError('UPSTREAM_ERROR', 'upstream blob is larger than the mirror accepts', { detail: { namespace, digest, maxBytes } });
  }

  private async writeChunks(chunks: Buffer[], bytes: number): Promise<void> {
    if (this.localWriter) {
      // The storage writer's own file is the spool: its failure fails the fill.
      if (this.localWriter.writev) await this.localWriter.writev(chunks);
      else for (const c of chunks) await this.localWriter.write(c);
      return;
    }
    await writeAllAt(this.spoolFd as FileHandle, chunks, bytes, this.written);
  }

  /** Renames the filesystem temp file into place; a failure only loses caching. */
  private async commitLocal(): Promise<void> {
    const writer = this.localWriter;
    if (!writer) return;
    this.localWriter = undefined;
    try {
      await writer.commit();
      this.stored = true;
    } catch (e) {
      this.options.observer?.storageError?.('commit_blob');
      this.options.log.warn({ digest: this.digest, err: errMessage(e) }, 'storage commit failed; served uncached');
      await writer.abort().catch(() => undefined);
    }
  }

  /**
   * Copies the spool to a remote storage behind the download, through one reused buffer, and commits
   * once the download verified. Storage failures only lose caching: clients are served from the spool.
   */
  private async runUpload(writer: BlobWriter): Promise<void> {
    const buf = Buffer.allocUnsafe(UPLOAD_READ_BYTES);
    let pos = 0;
    try {
      for (;;) {
        if (this.failure) throw this.failure;
        if (this.localWriteFailed) throw new Error('the local spool could not be written');
        if (pos < this.written) {
          const chunk = await this.read(pos, Math.min(buf.length, this.written - pos), buf);
          if (chunk.length === 0) throw new Error('spool ended early');
          await writer.write(chunk);
          pos += chunk.length;
          continue;
        }
        if (this.spooled) break;
        await once(this, 'change');
      }
      await writer.commit();
      this.stored = true;
    } catch (e) {
      await writer.abort().catch(() => undefined);
      if (e !== this.failure) {
        this.options.observer?.storageError?.('write_blob');
        this.options.log.warn({ digest: this.digest, err: errMessage(e) }, 'storage upload failed; blob served uncached');
      }
    }
  }

  private async cleanupFiles(): Promise<void> {
    this.options.spool.refund(this.spoolCharge);
    this.spoolCharge = 0;
    this.recent.clear();
    const fd = this.readFd;
    this.readFd = undefined;
    await fd?.close().catch(() => undefined);
    await this.spoolFd?.close().catch(() => undefined);
    this.spoolFd = undefined;
    // Our own spool is ours to remove; the filesystem writer's temp file is renamed or removed by the writer.
    if (this.ownSpool && this.spoolPath) await rm(this.spoolPath, { force: true }).catch(() => undefined);
  }
}

export function errMessage(e: unknown): string {
  const err = e as { code?: string; message?: string };
  return err.code ? `${err.code}: ${err.message ?? ''}` : (err.message ?? String(e));
}
