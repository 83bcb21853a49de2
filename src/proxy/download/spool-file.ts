import { open, rm, type FileHandle } from 'node:fs/promises';
import { tempPath } from '../../fs/temp-path.js';
import { writeAllAt } from '../../fs/write-all.js';
import type { BlobWriter } from '../../storage/storage.js';
import { ChangeSignal } from './change-signal.js';

/** Bytes allowed to wait for the spool write before the writer is asked to wait. */
const MAX_BATCH_BYTES = 1024 * 1024;

/**
 * The local file a download's bytes go to, read back by clients that fall behind and by the upload to a
 * remote storage. With the filesystem backend it is the storage writer's own temp file (renamed into place
 * by the writer's commit, so the blob is written once); otherwise a temp file of its own in the spool
 * directory, removed by close().
 *
 * Writes are write-behind: chunks appended while a write is in flight are batched into the next write, so
 * receiving and writing overlap and small chunks cost one syscall per batch.
 *
 * Its end is told from outside: seal() once every byte is written and the download verified it (a remote
 * upload commits only then), abandon() when the download failed (an upload aborts).
 */
export class SpoolFile {
  readonly changed = new ChangeSignal();
  private writtenBytes = 0;
  private batch: Buffer[] = [];
  private batchBytes = 0;
  private writing: Promise<void> | undefined;
  private writeError: unknown;
  private end: { sealed: true } | { abandoned: Error } | undefined;

  private constructor(
    private readFd: FileHandle | undefined,
    /** The storage writer whose file this is (filesystem), else our own write handle and path. */
    private readonly target: { writer: BlobWriter } | { fd: FileHandle | undefined; path: string },
  ) {}

  /**
   * Opens the spool: `writer`'s own file when it has one (`localPath`), else a new temp file in `dir`.
   * Nothing is left behind when it fails.
   */
  static async create(dir: string, writer: BlobWriter | undefined): Promise<SpoolFile> {
    if (writer?.localPath) return new SpoolFile(await open(writer.localPath, 'r'), { writer });
    const path = tempPath(dir);
    const fd = await open(path, 'wx');
    try {
      return new SpoolFile(await open(path, 'r'), { fd, path });
    } catch (e) {
      await fd.close().catch(() => undefined);
      await rm(path, { force: true }).catch(() => undefined);
      throw e;
    }
  }

  /** Bytes in the file. */
  get written(): number {
    return this.writtenBytes;
  }

  /** The first write that failed; nothing is written after it. */
  get failure(): unknown {
    return this.writeError;
  }

  /** Every byte is in the file and the download verified them. */
  get sealed(): boolean {
    return this.end !== undefined && 'sealed' in this.end;
  }

  /** Why the spool will never be complete, once it will not. */
  get abandoned(): Error | undefined {
    return this.end !== undefined && 'abandoned' in this.end ? this.end.abandoned : undefined;
  }

  /**
   * Queues a chunk (kept, not copied: it must not change). Resolves nothing when the caller may go on at
   * once; a promise to wait for when the bytes waiting for the disk reach their bound.
   */
  append(chunk: Buffer): Promise<void> | undefined {
    this.batch.push(chunk);
    this.batchBytes += chunk.length;
    const pending = this.startFlush();
    return this.batchBytes >= MAX_BATCH_BYTES ? pending : undefined;
  }

  /** Waits until every queued chunk is written; false when a write failed. */
  async drain(): Promise<boolean> {
    while (this.writing) await this.writing;
    if (this.writeError === undefined) await this.startFlush();
    return this.writeError === undefined;
  }

  seal(): void {
    this.end = { sealed: true };
    this.changed.notify();
  }

  abandon(reason: Error): void {
    this.end ??= { abandoned: reason };
    this.changed.notify();
  }

  /**
   * Bytes [position, position + length) of the file, possibly fewer, into `into` when it is large enough.
   * Only written bytes can be read.
   */
  async read(position: number, length: number, into?: Buffer): Promise<Buffer> {
    const fd = this.readFd;
    if (!fd) throw new Error('spool closed');
    if (position >= this.writtenBytes) throw new Error('spool read beyond the written bytes');
    length = Math.min(length, this.writtenBytes - position);
    const buf = into && into.length >= length ? into : Buffer.allocUnsafe(length);
    const { bytesRead } = await fd.read(buf, 0, length, position);
    return bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
  }

  /** No more writes: closes our write handle (the storage writer closes its own on commit or abort). */
  async closeWriting(): Promise<void> {
    if (!('fd' in this.target)) return;
    const fd = this.target.fd;
    this.target.fd = undefined;
    await fd?.close().catch(() => undefined);
  }

  /** Closes the file and removes it if it is our own; the storage writer's file is its writer's to rename or remove. */
  async close(): Promise<void> {
    const fd = this.readFd;
    this.readFd = undefined;
    await fd?.close().catch(() => undefined);
    await this.closeWriting();
    if ('path' in this.target) await rm(this.target.path, { force: true }).catch(() => undefined);
  }

  private startFlush(): Promise<void> {
    this.writing ??= this.flush()
      .catch((e: unknown) => {
        this.writeError ??= e;
      })
      .finally(() => (this.writing = undefined));
    return this.writing;
  }

  private async flush(): Promise<void> {
    while (this.batch.length > 0) {
      const chunks = this.batch;
      const bytes = this.batchBytes;
      this.batch = [];
      this.batchBytes = 0;
      await this.writeChunks(chunks, bytes);
      this.writtenBytes += bytes;
      this.changed.notify();
    }
  }

  private async writeChunks(chunks: Buffer[], bytes: number): Promise<void> {
    if ('writer' in this.target) {
      const { writer } = this.target;
      if (writer.writev) await writer.writev(chunks);
      else for (const c of chunks) await writer.write(c);
      return;
    }
    const fd = this.target.fd;
    if (!fd) throw new Error('spool closed for writing');
    await writeAllAt(fd, chunks, bytes, this.writtenBytes);
  }
}
