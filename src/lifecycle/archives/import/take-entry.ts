import { readCapped } from '../../../read-capped.js';
import { digestOf } from '../../../oci/digest.js';
import { isGzip, layoutBlobDigest, linkTarget, looksLikeJson, namedDigest, normalizeEntryName } from '../archive-entries.js';
import { ImportError } from './import-error.js';
import { MAX_MANIFEST_BYTES } from '../../../oci/limits.js';
import { MAX_METADATA } from './limits.js';
import type { TarEntry } from './read-tar.js';
import { storeClaimed, storeSpooled, type EntrySink } from './stream-entry.js';

/** JSON entries kept in memory at most, in total; beyond, they are streamed into storage like any blob. */
const MAX_BUFFERED = 64 * 1024 * 1024;
const METADATA_FILES = new Set(['manifest.json', 'index.json', 'oci-layout', 'repositories']);

/**
 * Decides what becomes of each tar entry as it is met: a link is remembered, a small JSON file (manifest,
 * config, metadata) is kept in memory, anything else is streamed into storage, checked against the digest
 * its name claims or, without one, through a spool file. Entries that are never part of an image are drained.
 */
export class EntryIntake {
  /** Bytes of JSON entries held in memory so far. */
  private buffered = 0;

  constructor(private readonly sink: EntrySink) {}

  async take(entry: TarEntry): Promise<void> {
    const header = entry.header;
    const name = normalizeEntryName(header.name);
    if (name !== undefined && (header.type === 'symlink' || header.type === 'link') && header.linkname) {
      const target = linkTarget(name, header.linkname, header.type);
      if (target !== undefined) this.sink.contents.addLink(name, target);
    }
    // Docker's legacy per-layer VERSION files: never part of an image.
    if (name === undefined || (header.type !== 'file' && header.type !== 'contiguous-file') || name.endsWith('/VERSION')) {
      for await (const _ of entry) void _;
      return;
    }
    const iterator = entry[Symbol.asyncIterator]();
    const first = await iterator.next();
    const firstChunk = first.done ? undefined : (first.value as Buffer);
    const chunks = async function* (): AsyncGenerator<Buffer> {
      if (firstChunk) yield firstChunk;
      for (;;) {
        const next = await iterator.next();
        if (next.done) return;
        yield next.value as Buffer;
      }
    };
    const size = header.size ?? 0;
    const layoutDigest = layoutBlobDigest(name);
    const claimed = layoutDigest ?? namedDigest(name);
    const metadata = METADATA_FILES.has(name);
    if (metadata || (looksLikeJson(firstChunk) && size <= MAX_MANIFEST_BYTES && this.buffered + size <= MAX_BUFFERED)) {
      if (size > MAX_METADATA) throw new ImportError(`${name}: ${size} bytes, too large for a metadata file`);
      const bytes = await readCapped(chunks(), MAX_METADATA, name);
      this.buffered += bytes.length;
      const digest = digestOf(bytes, claimed?.algorithm ?? 'sha256');
      if (claimed && !metadata && digest !== claimed.value) {
        throw new ImportError(`${name}: content does not match its digest (expected ${claimed.value}, got ${digest})`);
      }
      this.sink.contents.addFile({
        name,
        digest,
        size: bytes.length,
        gzip: false,
        diffId: claimed?.algorithm === 'sha512' ? undefined : digestOf(bytes),
        bytes,
      });
      return;
    }
    const gzip = isGzip(firstChunk);
    // Docker archives (not OCI layouts) describe layers by diff_id: hash the gunzipped bytes of gzip layers.
    const wantDiffId = gzip && !layoutDigest;
    // A name is trusted as the writer's digest when a mismatch can only mean corruption.
    if (layoutDigest || (claimed && !gzip)) {
      await storeClaimed(this.sink, name, claimed as NonNullable<typeof claimed>, chunks(), gzip, wantDiffId);
    } else {
      await storeSpooled(this.sink, name, chunks(), gzip, wantDiffId);
    }
  }
}
