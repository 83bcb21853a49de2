import { open, rm, type FileHandle } from 'node:fs/promises';
import type { BlobWriter } from '../storage.js';
import { tempPath } from '../../fs/temp-path.js';
import { writeAllAt } from '../../fs/write-all.js';
import { publish } from './atomic-file.js';

/** Writes a blob to a temp file under tmp/; commit syncs and renames it to its digest path. */
export class FilesystemBlobWriter implements BlobWriter {
  readonly localPath: string;
  private done = false;
  /** Bytes written so far: every write is positional (pwritev), appended at this offset. */
  private size = 0;

  private constructor(
    private readonly fh: FileHandle,
    temp: string,
    private readonly target: string,
  ) {
    this.localPath = temp;
  }

  static async create(tmpDir: string, target: string): Promise<FilesystemBlobWriter> {
    const temp = tempPath(tmpDir);
    const fh = await open(temp, 'wx');
    return new FilesystemBlobWriter(fh, temp, target);
  }

  async write(chunk: Buffer): Promise<void> {
    await this.writev([chunk]);
  }

  async writev(chunks: Buffer[]): Promise<void> {
    const bytes = chunks.reduce((n, c) => n + c.length, 0);
    await writeAllAt(this.fh, chunks, bytes, this.size);
    this.size += bytes;
  }

  async commit(): Promise<void> {
    if (this.done) throw new Error('blob writer already finished');
    this.done = true;
    try {
      await this.fh.datasync();
      await this.fh.close();
      await publish(this.localPath, this.target);
    } catch (e) {
      await this.cleanup();
      throw e;
    }
  }

  async abort(): Promise<void> {
    this.done = true;
    await this.cleanup();
  }

  private async cleanup(): Promise<void> {
    await this.fh.close().catch(() => undefined);
    await rm(this.localPath, { force: true }).catch(() => undefined);
  }
}
