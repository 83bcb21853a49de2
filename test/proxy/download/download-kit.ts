/** What the download unit tests share: a download over an in-memory storage and an in-memory source. */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import type { Test } from 'tap';
import { pino } from 'pino';
import { SpoolBudget } from '../../../src/proxy/download-limits.js';
import { BlobDownload, type DownloadOptions } from '../../../src/proxy/download/blob-download.js';
import type { SourceBody } from '../../../src/proxy/download/download-source.js';
import { MemoryStorage } from '../../helpers/memory-storage.js';

export const MiB = 1024 * 1024;

export interface Kit {
  storage: MemoryStorage;
  spoolDir: string;
  budget: SpoolBudget;
  options(digest: string, extra?: Partial<DownloadOptions>): DownloadOptions;
  /** Files left in the spool directory. */
  spoolFiles(): Promise<string[]>;
}

export async function kit(t: Test): Promise<Kit> {
  const spoolDir = await mkdtemp(join(tmpdir(), 'download-test-'));
  t.teardown(() => rm(spoolDir, { recursive: true, force: true }));
  const storage = new MemoryStorage();
  const budget = new SpoolBudget(1024 * MiB);
  return {
    storage,
    spoolDir,
    budget,
    options: (digest, extra) => ({
      digest,
      namespace: 'test.local',
      storage,
      spoolDir,
      log: pino({ level: 'silent' }),
      observer: undefined,
      maxBytes: 1024 * MiB,
      spool: budget,
      ...extra,
    }),
    spoolFiles: async () => (await readdir(spoolDir)).filter((f) => !f.startsWith('writer-')),
  };
}

/** A body the test pushes chunks into; `size` is what it announces. */
export function pushedBody(size: number | undefined): { source: () => Promise<SourceBody>; body: PassThrough } {
  const body = new PassThrough();
  return { source: async () => ({ size, body }), body };
}

/** A body that yields `bytes` in `chunk`-sized pieces, counting what was pulled from it. */
export function countedBody(bytes: Buffer, chunk: number): { source: () => Promise<SourceBody>; pulled: () => number; body: Readable } {
  let pulled = 0;
  async function* gen(): AsyncGenerator<Buffer> {
    for (let at = 0; at < bytes.length; at += chunk) {
      const piece = bytes.subarray(at, Math.min(bytes.length, at + chunk));
      pulled += piece.length;
      yield piece;
    }
  }
  const body = Readable.from(gen(), { objectMode: false, highWaterMark: chunk });
  return { source: async () => ({ size: bytes.length, body }), pulled: () => pulled, body };
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.from(c as Buffer));
  return Buffer.concat(chunks);
}

export { BlobDownload };
