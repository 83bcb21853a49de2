import type { Readable } from 'node:stream';
import { createDigester, tryParseDigest } from '../../../oci/digest.js';
import type { Storage } from '../../../storage/storage.js';
import { hexDigest } from '../archive-entries.js';
import { ImportError } from './import-error.js';

/**
 * What an import changed in the cache: the blobs and manifests it added, deleted again by rollback()
 * when the import fails so a refused archive leaves the cache as it was, and the blobs it found there.
 */
export class ImportLedger {
  /** Blobs this import committed that were not in the cache before (deleted again on failure). */
  readonly added = new Set<string>();
  readonly addedManifests = new Set<string>();
  /** Blobs found in the cache already. */
  readonly reused = new Set<string>();

  constructor(private readonly storage: Storage) {}

  markReused(digest: string): void {
    if (!this.added.has(digest)) this.reused.add(digest);
  }

  /** Stores a blob whose digest is known, hashing it again on the way; commits only on a match. */
  async writeBlob(digest: string, source: Readable | Buffer): Promise<void> {
    const d = tryParseDigest(digest);
    if (!d) throw new ImportError(`invalid digest ${digest}`);
    const writer = await this.storage.createBlobWriter(digest);
    try {
      const hash = createDigester(d.algorithm);
      if (Buffer.isBuffer(source)) {
        hash.update(source);
        await writer.write(source);
      } else {
        for await (const chunk of source) {
          hash.update(chunk as Buffer);
          await writer.write(chunk as Buffer);
        }
      }
      const actual = hexDigest(d.algorithm, hash);
      if (actual !== digest) throw new ImportError(`blob ${digest} changed while being stored (got ${actual})`);
      await writer.commit();
      this.added.add(digest);
    } catch (e) {
      await writer.abort().catch(() => undefined);
      throw e;
    }
  }

  /** The point of no return (tags are about to be written): nothing is rolled back after it. */
  settle(): void {
    this.added.clear();
    this.addedManifests.clear();
  }

  /** Deletes every blob and manifest this import added (after a failure). */
  async rollback(): Promise<void> {
    for (const digest of this.added) await this.storage.deleteBlob(digest).catch(() => undefined);
    for (const digest of this.addedManifests) await this.storage.deleteManifest(digest).catch(() => undefined);
    this.settle();
  }
}
