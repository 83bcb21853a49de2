import { readCapped } from '../../../read-capped.js';
import type { Storage } from '../../../storage/storage.js';
import { gunzipDigest, normalizeEntryName } from '../archive-entries.js';
import { ImportError } from './import-error.js';

/** One regular file of the archive. */
export interface EntryRecord {
  name: string;
  /** Digest of the file's bytes (sha256, or the algorithm its layout path names). */
  digest: string;
  size: number;
  gzip: boolean;
  /** sha256 of the uncompressed bytes: the digest itself for a non-gzip file; undefined when not computed. */
  diffId: string | undefined;
  /** Held in memory (small JSON), not yet in storage. */
  bytes: Buffer | undefined;
}

/**
 * The archive's files as read: each regular file's record, and where its links point. Lookups follow
 * links; bytes not held in memory are read back from storage, where the file was streamed.
 */
export class ArchiveContents {
  private readonly files = new Map<string, EntryRecord>();
  private readonly links = new Map<string, string>();

  constructor(private readonly storage: Storage) {}

  addFile(record: EntryRecord): void {
    this.files.set(record.name, record);
  }

  addLink(name: string, target: string): void {
    this.links.set(name, target);
  }

  /** The regular-file entry at `name`, following symlinks and hard links. */
  entry(name: string): EntryRecord | undefined {
    let current = normalizeEntryName(name);
    for (let i = 0; i < 16 && current !== undefined; i++) {
      const e = this.files.get(current);
      if (e) return e;
      current = this.links.get(current);
    }
    return undefined;
  }

  /** The bytes of a small entry (from memory, or read back from storage when it was streamed there). */
  async bytes(e: EntryRecord, limit: number): Promise<Buffer> {
    if (e.bytes) return e.bytes;
    const stream = await this.storage.readBlob(e.digest);
    if (!stream) throw new ImportError(`${e.name}: vanished from the cache during the import`);
    return readCapped(stream, limit, e.name);
  }

  /** The sha256 of an entry's gunzipped bytes, computed from storage when reading did not. */
  async diffIdOf(e: EntryRecord): Promise<string | undefined> {
    if (e.diffId !== undefined || !e.gzip) return e.diffId;
    const stream = await this.storage.readBlob(e.digest);
    e.diffId = stream ? await gunzipDigest(stream) : undefined;
    return e.diffId;
  }
}
