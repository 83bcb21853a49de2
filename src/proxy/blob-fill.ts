import { EventEmitter } from 'node:events';
import { open, rm, type FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { createDigester, parseDigest } from '../oci/digest.js';
import { OciError } from '../oci/errors.js';
import type { BlobWriter, Storage } from '../storage/storage.js';
import { tempPath } from '../storage/filesystem/atomic-file.js';
import type { ProxyObserver } from './events.js';
import { SpoolReader } from './spool-reader.js';

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
}

/**
 * One upstream download of one blob, shared by every request that wants it while it runs.
 * Bytes are hashed, written to storage and to a local spool file; readers follow the spool at their own
 * pace. Storage sees a commit only after the digest matched; on a mismatch every reader is aborted.
 * The fill never depends on its readers: the first client going away does not stop it.
 */
export class BlobFill extends EventEmitter {
  readonly digest: string;
  size: number | undefined;
  written = 0;
  verified = false;
  failure: Error | undefined;
  /** Whether the verified blob was committed to storage. */
  stored = false;

  private refs = 1;
  private readFd: FileHandle | undefined;
  private spoolFd: FileHandle | undefined;
  private spoolPath: string | undefined;
  private writer: BlobWriter | undefined;
  /** True when the spool is our own temp file rather than the storage writer's. */
  private ownSpool = false;
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
  static async start(options: FillOptions, source: FillSource): Promise<BlobFill> {
    const fill = new BlobFill(options);
    fill.size = source.size;
    try {
      await fill.prepare();
    } catch (e) {
      source.body.destroy();
      await fill.cleanupFiles();
      throw e;
    }
    void fill.pump(source.body);
    return fill;
  }

  /** A stream of bytes [start, end) for one client. */
  reader(start = 0, end?: number): Readable {
    return new SpoolReader(this, start, end);
  }

  /** Resolves when the fill has either verified or failed. */
  settled(): Promise<void> {
    return this.done;
  }

  async read(position: number, length: number): Promise<Buffer> {
    const fd = this.readFd;
    if (!fd) throw new Error('spool closed');
    const buf = Buffer.allocUnsafe(length);
    const { bytesRead } = await fd.read(buf, 0, length, position);
    return bytesRead === length ? buf : buf.subarray(0, bytesRead);
  }

  retain(): void {
    this.refs++;
  }

  releaseRef(): void {
    this.refs--;
    if (this.refs === 0) void this.cleanupFiles();
  }

  private async prepare(): Promise<void> {
    const { storage, digest, log, observer } = this.options;
    try {
      this.writer = await storage.createBlobWriter(digest);
    } catch (e) {
      observer?.storageError?.('create_blob');
      log.warn({ digest, err: errMessage(e) }, 'storage cannot take the blob; serving it uncached');
    }
    if (this.writer?.localPath) {
      this.spoolPath = this.writer.localPath;
    } else {
      this.spoolPath = tempPath(this.options.spoolDir);
      this.ownSpool = true;
      this.spoolFd = await open(this.spoolPath, 'wx');
    }
    this.readFd = await open(this.spoolPath, 'r');
  }

  private async pump(body: Readable): Promise<void> {
    const { digest, log } = this.options;
    const expected = parseDigest(digest);
    const hash = createDigester(expected.algorithm);
    let outcome: 'failed' | 'digest_mismatch' = 'failed';
    try {
      for await (const chunk of body) {
        const buf = chunk as Buffer;
        hash.update(buf);
        await this.writeChunk(buf);
        this.written += buf.length;
        this.emit('change');
      }
      if (this.size !== undefined && this.written !== this.size) {
        throw new OciError('UPSTREAM_ERROR', 'upstream blob body was truncated', {
          detail: { digest, expected: this.size, received: this.written },
        });
      }
      const actual = `${expected.algorithm}:${hash.digest('hex')}`;
      if (actual !== digest) {
        outcome = 'digest_mismatch';
        throw new OciError('UPSTREAM_ERROR', 'upstream blob does not match its digest', { detail: { digest, received: actual } });
      }
      this.size = this.written;
      await this.commit();
      this.verified = true;
      this.options.observer?.fillFinished?.(this.options.namespace, this.stored ? 'stored' : 'uncached');
      this.emit('change');
    } catch (e) {
      body.destroy();
      this.failure = e instanceof Error ? e : new Error(String(e));
      this.options.observer?.fillFinished?.(this.options.namespace, outcome);
      log.warn({ digest, err: errMessage(e), received: this.written }, 'blob download failed; nothing stored');
      await this.writer?.abort().catch(() => undefined);
      this.writer = undefined;
      this.emit('change');
    } finally {
      await this.spoolFd?.close().catch(() => undefined);
      this.spoolFd = undefined;
      this.emit('settled');
      this.releaseRef();
    }
  }

  private async writeChunk(buf: Buffer): Promise<void> {
    const writer = this.writer;
    const spool = this.spoolFd;
    if (!spool) {
      // The storage writer's own file is the spool: its failure fails the fill.
      await (writer as BlobWriter).write(buf);
      return;
    }
    const spoolWrite = writeFully(spool, buf, this.written);
    if (writer) {
      try {
        await writer.write(buf);
      } catch (e) {
        // The bytes still reach every client through the spool; only caching is lost.
        this.options.observer?.storageError?.('write_blob');
        this.options.log.warn({ digest: this.digest, err: errMessage(e) }, 'storage write failed; continuing uncached');
        this.writer = undefined;
        void writer.abort().catch(() => undefined);
      }
    }
    await spoolWrite;
  }

  private async commit(): Promise<void> {
    const writer = this.writer;
    if (!writer) return;
    this.writer = undefined;
    try {
      await writer.commit();
      this.stored = true;
    } catch (e) {
      this.options.observer?.storageError?.('commit_blob');
      this.options.log.warn({ digest: this.digest, err: errMessage(e) }, 'storage commit failed; served uncached');
      await writer.abort().catch(() => undefined);
    }
  }

  private async cleanupFiles(): Promise<void> {
    const fd = this.readFd;
    this.readFd = undefined;
    await fd?.close().catch(() => undefined);
    await this.spoolFd?.close().catch(() => undefined);
    this.spoolFd = undefined;
    // A separate spool is ours to remove; the writer's temp file is renamed or removed by the writer.
    if (this.ownSpool && this.spoolPath) await rm(this.spoolPath, { force: true }).catch(() => undefined);
  }
}

async function writeFully(fd: FileHandle, buf: Buffer, position: number): Promise<void> {
  let offset = 0;
  while (offset < buf.length) {
    const { bytesWritten } = await fd.write(buf, offset, buf.length - offset, position + offset);
    offset += bytesWritten;
  }
}

export function errMessage(e: unknown): string {
  const err = e as { code?: string; message?: string };
  return err.code ? `${err.code}: ${err.message ?? ''}` : (err.message ?? String(e));
}
