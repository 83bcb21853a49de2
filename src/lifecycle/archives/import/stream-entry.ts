import { createReadStream } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { createDigester, type DigestAlgorithm } from '../../../oci/digest.js';
import type { Storage } from '../../../storage/storage.js';
import { GunzipHasher, hexDigest } from '../archive-entries.js';
import type { ArchiveContents } from './archive-contents.js';
import { ImportError, storing } from './import-error.js';
import type { ImportLedger } from './import-ledger.js';
import type { ImportSpool } from './spool.js';

/** What streaming an entry into the cache writes to: storage, and the records of what was read and stored. */
export interface EntrySink {
  storage: Storage;
  contents: ArchiveContents;
  ledger: ImportLedger;
  spool: ImportSpool;
}

/** Streams an entry into a writer for the digest its name claims; commits only on a match. */
export async function storeClaimed(
  sink: EntrySink,
  name: string,
  claimed: { algorithm: DigestAlgorithm; value: string },
  chunks: AsyncIterable<Buffer>,
  gzip: boolean,
  wantDiffId: boolean,
): Promise<void> {
  const existing = await storing(name, sink.storage.statBlob(claimed.value));
  const writer = existing ? undefined : await storing(name, sink.storage.createBlobWriter(claimed.value));
  const hash = createDigester(claimed.algorithm);
  const diff = wantDiffId ? new GunzipHasher() : undefined;
  let size = 0;
  try {
    for await (const chunk of chunks) {
      hash.update(chunk);
      size += chunk.length;
      await diff?.write(chunk);
      if (writer) await storing(name, writer.write(chunk));
    }
    const digest = hexDigest(claimed.algorithm, hash);
    if (digest !== claimed.value) {
      throw new ImportError(`${name}: content does not match its digest (expected ${claimed.value}, got ${digest}); nothing imported`);
    }
    const diffId = gzip ? await diff?.end() : claimed.algorithm === 'sha256' ? digest : undefined;
    if (writer) {
      await storing(name, writer.commit());
      sink.ledger.added.add(digest);
    } else {
      sink.ledger.markReused(digest);
    }
    sink.contents.addFile({ name, digest, size, gzip, diffId, bytes: undefined });
  } catch (e) {
    await writer?.abort().catch(() => undefined);
    throw e;
  } finally {
    diff?.destroy();
  }
}

/** An entry whose digest is unknown until its end: hash it into a spool file, then copy it into storage. */
export async function storeSpooled(
  sink: EntrySink,
  name: string,
  chunks: AsyncIterable<Buffer>,
  gzip: boolean,
  wantDiffId: boolean,
): Promise<void> {
  const path = await sink.spool.newFile();
  const fh = await storing(name, open(path, 'wx'));
  const hash = createDigester('sha256');
  const diff = wantDiffId ? new GunzipHasher() : undefined;
  let size = 0;
  try {
    try {
      for await (const chunk of chunks) {
        hash.update(chunk);
        size += chunk.length;
        await diff?.write(chunk);
        let offset = 0;
        while (offset < chunk.length) offset += (await storing(name, fh.write(chunk, offset, chunk.length - offset))).bytesWritten;
      }
    } finally {
      await fh.close();
    }
    const digest = hexDigest('sha256', hash);
    const diffId = gzip ? await diff?.end() : digest;
    if (await storing(name, sink.storage.statBlob(digest))) {
      sink.ledger.markReused(digest);
    } else {
      // Re-hashed on the way from the spool: a local disk that lied is caught too.
      await storing(name, sink.ledger.writeBlob(digest, createReadStream(path, { highWaterMark: 1024 * 1024 })));
    }
    sink.contents.addFile({ name, digest, size, gzip, diffId, bytes: undefined });
  } finally {
    diff?.destroy();
    await rm(path, { force: true }).catch(() => undefined);
  }
}
