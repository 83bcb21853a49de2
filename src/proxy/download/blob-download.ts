import { errorText } from '../../error-text.js';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { createDigester, parseDigest } from '../../oci/digest.js';
import { OciError } from '../../oci/errors.js';
import type { BlobWriter, Storage } from '../../storage/storage.js';
import { transportError } from '../../upstream/errors.js';
import type { SpoolBudget } from '../download-limits.js';
import type { ProxyObserver } from '../events.js';
import { ChangeSignal } from './change-signal.js';
import type { DownloadSource } from './download-source.js';
import { RecentChunks } from './recent-chunks.js';
import { RefCount } from './ref-count.js';
import { SpoolFile } from './spool-file.js';
import { SpoolFullError, SpoolUnavailableError } from './spool-unavailable.js';
import { uploadSpool } from './upload-follower.js';

export interface DownloadOptions {
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
  /** False: the blob reaches its readers through a spool of its own and is stored nowhere (what another replica stores). */
  store?: boolean | undefined;
}

/** How much of the spool already written stays in memory for readers at the head. */
const RECENT_BYTES = 2 * 1024 * 1024;

/**
 * One download of one blob, shared by every request that wants it while it runs: it receives the source's
 * bytes, hashes them, hands them to its followers and the spool file, and gives the verdict.
 *
 * Followers: readers (spool-reader.ts) get each chunk from memory as it arrives (RecentChunks), or from the
 * spool file when they fall behind. With the filesystem backend the spool is the storage's own temp file,
 * committed here on a digest match; with a remote backend (S3) an upload follows the spool
 * (upload-follower.ts) and commits after the verdict. On a mismatch every reader is failed and nothing is
 * stored. The download never depends on its readers: the first client going away does not stop it. What
 * bounds it instead: a body longer than its Content-Length or than `maxBytes` fails it, and so does a
 * source silent for its read timeout (upstream/dispatcher.ts), with or without clients.
 */
export class BlobDownload {
  readonly digest: string;
  private bodySize: number | undefined;
  private receivedBytes = 0;
  private isVerified = false;
  private failed: Error | undefined;
  private isStored = false;
  private diskRefused = false;
  private followerCount = 0;
  /** The body may not bring more: its Content-Length, else maxBytes. */
  private limit = 0;
  /** What this download holds of the spool budget, given back when its files are gone. */
  private spoolCharge = 0;
  /** The bytes not yet in the spool and the last few MiB written, for readers that follow closely. */
  private readonly recent = new RecentChunks(RECENT_BYTES);
  private readonly changed = new ChangeSignal();
  private readonly refs = new RefCount(() => void this.cleanup());
  private spool: SpoolFile | undefined;
  /** The storage writer whose temp file is the spool (filesystem), committed by the download itself. */
  private localWriter: BlobWriter | undefined;
  /** The remote storage's writer (S3) until its upload starts, once the source answered. */
  private remoteWriter: BlobWriter | undefined;
  /** The upload of the spool to a remote storage, when there is one. */
  private upload: Promise<void> | undefined;
  private readonly done: Promise<void>;
  private settle!: () => void;

  private constructor(private readonly options: DownloadOptions) {
    this.digest = options.digest;
    this.done = new Promise((resolve) => (this.settle = resolve));
  }

  /**
   * Prepares the spool and the storage writer while the source is asked for the body, then receives it
   * in the background. A storage that cannot take the blob (EACCES, ENOSPC, S3 down) degrades to a
   * spool-only download. Throws the source's error, or SpoolUnavailableError (carrying the unread body)
   * when no spool can be had.
   */
  static async start(options: DownloadOptions, source: DownloadSource): Promise<BlobDownload> {
    const download = new BlobDownload(options);
    // The spool files are created while the source's answer is on its way: one less wait per blob.
    const answer = (async () => source())().then(
      (body) => ({ body }),
      (error: unknown) => ({ error }),
    );
    let spoolError: unknown;
    try {
      await download.prepare();
    } catch (e) {
      spoolError = e ?? new Error('spool preparation failed');
    }
    const got = await answer;
    if ('error' in got || spoolError !== undefined || !download.admit(got.body.size)) {
      await download.localWriter?.abort().catch(() => undefined);
      await download.remoteWriter?.abort().catch(() => undefined);
      await download.cleanup();
      if ('error' in got) throw got.error;
      // The body is untouched: the caller may still stream it to its client, uncached.
      if (spoolError !== undefined) throw new SpoolUnavailableError(got.body, spoolError);
      throw new SpoolFullError(got.body);
    }
    download.bodySize = got.body.size;
    download.limit = Math.min(got.body.size ?? Number.POSITIVE_INFINITY, options.maxBytes);
    download.startUpload();
    void download.receive(got.body.body);
    return download;
  }

  /** The namespace whose upstream this download reads from (the status page). */
  get namespace(): string {
    return this.options.namespace;
  }

  /** The body's size: announced, else known once it is all received. */
  get size(): number | undefined {
    return this.bodySize;
  }

  /** Bytes received and hashed: readers may read this far (memory or spool). */
  get received(): number {
    return this.receivedBytes;
  }

  /** The whole blob was received and matched its digest (it may still be on its way to the spool). */
  get verified(): boolean {
    return this.isVerified;
  }

  /** Why the download failed (an OCI error value), once it has. */
  get failure(): Error | undefined {
    return this.failed;
  }

  /** The verified blob was committed to storage. */
  get stored(): boolean {
    return this.isStored;
  }

  /** The local disk refused a write (ENOSPC, EACCES, EIO): not the source's fault. */
  get localWriteFailed(): boolean {
    return this.diskRefused;
  }

  /** Bytes held in memory for readers (the chunks not yet in the spool and the latest written ones). */
  get heldBytes(): number {
    return this.recent.size;
  }

  /** Readers following the download now (they size their reads by it). */
  get readers(): number {
    return this.followerCount;
  }

  /** Resolves when the download has verified or failed, and any storage upload has finished. */
  settled(): Promise<void> {
    return this.done;
  }

  /** Keeps the spool until the returned release is called (once is enough). */
  hold(): () => void {
    this.refs.retain();
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.refs.release();
    };
  }

  /**
   * Counts a reader and calls `onChange` when bytes arrive or the verdict comes, until the returned
   * leave() is called; the spool stays until then.
   */
  follow(onChange: () => void): () => void {
    const release = this.hold();
    this.followerCount++;
    const stop = this.changed.listen(onChange);
    let following = true;
    return () => {
      if (!following) return;
      following = false;
      this.followerCount--;
      stop();
      release();
    };
  }

  /**
   * Bytes [position, position + length) received, possibly fewer. Readers near the head of the download
   * (most of a herd) get views of the chunks just received, shared by all of them: no read and no
   * allocation per client. Others, and any caller passing `into`, read the spool file.
   */
  async read(position: number, length: number, into?: Buffer): Promise<Buffer> {
    if (!into) {
      const recent = this.recent.slice(position, length);
      if (recent) return recent;
    }
    if (!this.spool) throw new Error('spool closed');
    return this.spool.read(position, length, into);
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
      log.warn({ digest, err: errorText(e) }, 'storage cannot take the blob; serving it uncached');
    }
    // A writer with a local file (filesystem) is the spool itself; any other one (S3) gets an upload.
    if (writer?.localPath) this.localWriter = writer;
    else this.remoteWriter = writer;
    const spool = await SpoolFile.create(this.options.spoolDir, this.localWriter);
    this.spool = spool;
    // Written bytes can be read from the file: memory keeps only the latest of them.
    spool.changed.listen(() => this.recent.trim(spool.written));
  }

  /** Starts copying the spool to the remote storage, behind the download. */
  private startUpload(): void {
    const writer = this.remoteWriter;
    const spool = this.spool;
    if (!writer || !spool) return;
    this.remoteWriter = undefined;
    const release = this.hold();
    this.upload = uploadSpool(spool, writer)
      .then(
        () => {
          this.isStored = true;
        },
        (e: unknown) => {
          // Storage failures only lose caching: clients are served from the spool.
          if (e === this.failed) return;
          this.options.observer?.storageError?.('write_blob');
          this.options.log.warn({ digest: this.digest, err: errorText(e) }, 'storage upload failed; blob served uncached');
        },
      )
      .finally(release);
  }

  private async receive(body: Readable): Promise<void> {
    const { digest, log, namespace, observer } = this.options;
    const spool = this.spool as SpoolFile;
    const expected = parseDigest(digest);
    const hash = createDigester(expected.algorithm);
    let outcome: 'failed' | 'digest_mismatch' = 'failed';
    try {
      for await (const chunk of body) {
        if (spool.failure !== undefined) throw spool.failure;
        const buf = chunk as Buffer;
        // Checked before any reader sees the bytes: an endless or lying body ends here.
        if (this.receivedBytes + buf.length > this.limit) throw this.tooLong();
        if (this.bodySize === undefined) this.chargeSpool(buf.length);
        hash.update(buf);
        // Readers get the chunk now, from memory; the spool write runs beside them.
        this.recent.append(this.receivedBytes, buf);
        this.receivedBytes += buf.length;
        this.changed.notify();
        // Bound what waits in memory: past the spool's batch bound, wait for the disk.
        const full = spool.append(buf);
        if (full) await full;
      }
      if (spool.failure !== undefined) throw spool.failure;
      if (this.bodySize !== undefined && this.receivedBytes !== this.bodySize) {
        throw new OciError('UPSTREAM_ERROR', 'upstream blob body was truncated', {
          detail: { digest, expected: this.bodySize, received: this.receivedBytes },
        });
      }
      const actual = `${expected.algorithm}:${hash.digest('hex')}`;
      if (actual !== digest) {
        outcome = 'digest_mismatch';
        throw new OciError('UPSTREAM_ERROR', 'upstream blob does not match its digest', { detail: { digest, received: actual } });
      }
      this.bodySize = this.receivedBytes;
      // Readers get their last byte now, from memory if the disk is behind. The last spool writes and the
      // commit (fdatasync + rename) run behind them; until they are done the download stays in flight, so
      // new requests join it instead of missing.
      this.isVerified = true;
      this.changed.notify();
      if (await spool.drain()) {
        spool.seal();
        await this.commitLocal();
      } else {
        // Every byte is verified and in memory for the readers: the disk failing now only loses the caching.
        this.diskRefused = true;
        observer?.storageError?.('write_blob');
        log.warn({ digest, err: errorText(spool.failure) }, 'spool write failed after the download verified; blob served uncached');
        await this.localWriter?.abort().catch(() => undefined);
        this.localWriter = undefined;
        spool.abandon(new Error('the local spool could not be written'));
      }
    } catch (e) {
      body.destroy();
      if (spool.failure !== undefined && e === spool.failure) {
        this.diskRefused = true;
        observer?.storageError?.('write_blob');
      }
      // A transport error (reset, timeout) becomes an OCI error value, so a client that has not yet
      // received headers gets a 502/503/504 rather than a 500.
      const failure = transportError(namespace, e);
      this.failed = failure;
      observer?.downloadFinished?.(namespace, outcome);
      log.warn({ digest, err: errorText(e), received: this.receivedBytes }, 'blob download failed; nothing stored');
      await this.localWriter?.abort().catch(() => undefined);
      this.localWriter = undefined;
      spool.abandon(failure);
      this.changed.notify();
    } finally {
      await spool.closeWriting();
      await this.upload;
      if (!this.failed) observer?.downloadFinished?.(namespace, this.isStored ? 'stored' : 'uncached');
      this.settle();
      this.refs.release();
    }
  }

  private tooLong(): OciError {
    const { digest, namespace, maxBytes } = this.options;
    return this.bodySize !== undefined && this.bodySize <= maxBytes
      ? new OciError('UPSTREAM_ERROR', 'upstream blob body is longer than its Content-Length', {
          detail: { namespace, digest, size: this.bodySize },
        })
      : new OciError('UPSTREAM_ERROR', 'upstream blob is larger than the mirror accepts', { detail: { namespace, digest, maxBytes } });
  }

  /** Renames the filesystem temp file (the spool) into place; a failure only loses caching. */
  private async commitLocal(): Promise<void> {
    const writer = this.localWriter;
    if (!writer) return;
    this.localWriter = undefined;
    try {
      await writer.commit();
      this.isStored = true;
    } catch (e) {
      this.options.observer?.storageError?.('commit_blob');
      this.options.log.warn({ digest: this.digest, err: errorText(e) }, 'storage commit failed; served uncached');
      await writer.abort().catch(() => undefined);
    }
  }

  /** The last reference went: gives back the spool budget and closes (and removes, if ours) the spool. */
  private async cleanup(): Promise<void> {
    this.options.spool.refund(this.spoolCharge);
    this.spoolCharge = 0;
    this.recent.clear();
    const spool = this.spool;
    this.spool = undefined;
    await spool?.close();
  }
}
