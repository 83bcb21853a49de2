import { errorText } from '../../error-text.js';
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import tar from 'tar-stream';
import { formatImageReference, type ImageReference } from '../../oci/image-reference.js';
import { OCI_INDEX } from '../../oci/media-types.js';
import { verifyingStream } from '../../proxy/verify-stream.js';
import type { Storage, StoredManifest } from '../../storage/storage.js';
import { layoutBlobPath } from './archive-entries.js';
import { formatPlatform, manifestRefs } from '../manifest-refs.js';

/**
 * Writes cached images as an OCI image-layout tarball (what `skopeo copy ... oci-archive:` writes and
 * `import` reads): `oci-layout`, `index.json` with one entry per image named by its full reference
 * (`org.opencontainers.image.ref.name` and `io.containerd.image.name`), and every manifest and blob under
 * `blobs/<alg>/<hex>`. Only the cache is read - no upstream is contacted - and blobs are streamed (and
 * re-verified) into the tar, never held in memory. Manifests keep their bytes, so every digest survives
 * an export / import round trip.
 */

export interface ExportImage {
  reference: string;
  digest: string;
  mediaType: string;
  manifests: number;
  blobs: number;
  bytes: number;
}

export interface ExportReport {
  images: ExportImage[];
  /** Distinct blobs written (manifests included), and their bytes. */
  entries: number;
  bytes: number;
  warnings: string[];
}

export class ExportError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ExportError';
  }
}

const MAX_INDEX_DEPTH = 4;
const REF_NAME = 'org.opencontainers.image.ref.name';
const CONTAINERD_NAME = 'io.containerd.image.name';
/** Fixed entry times: the same cache content always gives the same archive bytes. */
const MTIME = new Date('2000-01-01T00:00:00Z');

interface Collected {
  manifests: Map<string, StoredManifest>;
  blobs: Map<string, number>;
  images: ExportImage[];
  index: { mediaType: string; digest: string; size: number; annotations: Record<string, string> }[];
  warnings: string[];
}

/** Checks that every image is complete in the cache, then streams the archive to `out` (which it ends, or destroys on failure). */
export async function exportArchive(
  images: readonly ImageReference[],
  out: Writable,
  options: { storage: Storage },
): Promise<ExportReport> {
  const collected = await collect(images, options.storage);
  let bytes = 0;
  const pack = tar.pack();
  // Failures are reported by the awaits below; the stream's own error event must not be unhandled.
  pack.on('error', () => undefined);
  // The tar stream is copied to `out` by its own loop; entries below wait for it (backpressure).
  const draining = (async () => {
    for await (const chunk of pack as AsyncIterable<Buffer>) {
      if (!out.write(chunk)) await once(out, 'drain');
    }
    await new Promise<void>((resolve, reject) => {
      out.once('error', reject);
      out.end(() => resolve());
    });
  })();
  const failed = draining.then(
    () => new Promise<never>(() => undefined),
    (e: unknown) => {
      throw e;
    },
  );
  failed.catch(() => undefined);
  try {
    const put = async (name: string, data: Buffer): Promise<void> => {
      const done = new Promise<void>((resolve, reject) =>
        pack.entry({ name, size: data.length, mtime: MTIME, mode: 0o644 }, data, (err) => (err ? reject(err) : resolve())),
      );
      await Promise.race([done, failed]);
    };
    await put('oci-layout', Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' })));
    for (const dir of directories(collected)) {
      await Promise.race([
        new Promise<void>((resolve, reject) =>
          pack.entry({ name: dir, type: 'directory', mtime: MTIME, mode: 0o755 }, (err) => (err ? reject(err) : resolve())),
        ),
        failed,
      ]);
    }
    await put('index.json', Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: collected.index }, null, 2)));
    for (const [digest, m] of collected.manifests) {
      await put(layoutBlobPath(digest), m.bytes);
      bytes += m.bytes.length;
    }
    for (const [digest, size] of collected.blobs) {
      const stream = await options.storage.readBlob(digest);
      if (!stream) throw new ExportError(`blob ${digest} vanished from the cache during the export`);
      let finish!: (err?: Error | null) => void;
      const done = new Promise<void>((resolve, reject) => (finish = (err) => (err ? reject(err) : resolve())));
      done.catch(() => undefined);
      const entry = pack.entry({ name: layoutBlobPath(digest), size, mtime: MTIME, mode: 0o644 }, (err) => finish(err));
      entry.on('error', () => undefined);
      try {
        // Re-verified on the way out: a cache that rotted does not produce an archive that fails later.
        for await (const chunk of stream.pipe(verifyingStream(digest))) {
          if (!entry.write(chunk as Buffer)) await Promise.race([once(entry as unknown as NodeJS.EventEmitter, 'drain'), failed]);
        }
      } catch (e) {
        stream.destroy();
        throw new ExportError(`blob ${digest}: ${errorText(e)} (run --verify-cache, then prefetch the image again)`);
      }
      entry.end(undefined);
      await Promise.race([done, failed]);
      bytes += size;
    }
    pack.finalize();
    await draining;
  } catch (e) {
    pack.destroy(e as Error);
    await draining.catch(() => undefined);
    // A write still in flight reports the destroy as an error event; the export has failed already.
    out.on('error', () => undefined);
    out.destroy();
    throw e;
  }
  return { images: collected.images, entries: collected.manifests.size + collected.blobs.size, bytes, warnings: collected.warnings };
}

async function collect(images: readonly ImageReference[], storage: Storage): Promise<Collected> {
  const c: Collected = { manifests: new Map(), blobs: new Map(), images: [], index: [], warnings: [] };
  for (const ref of images) {
    const name = formatImageReference(ref);
    let digest = ref.digest;
    if (digest === undefined) {
      const record = await storage.getTag({ namespace: ref.namespace, repository: ref.repository }, ref.tag ?? 'latest');
      if (!record) throw new ExportError(`${name} is not in the cache (prefetch it first)`);
      digest = record.digest;
    }
    const top = await storage.getManifest(digest);
    if (!top) throw new ExportError(`${name}: manifest ${digest} is not in the cache (prefetch it first)`);
    const image: ExportImage = { reference: name, digest, mediaType: top.mediaType, manifests: 0, blobs: 0, bytes: 0 };
    const mine = new Set<string>();
    const walk = async (d: string, m: StoredManifest, depth: number): Promise<void> => {
      c.manifests.set(d, m);
      image.manifests++;
      let refs;
      try {
        refs = manifestRefs(m.mediaType, m.bytes);
      } catch (e) {
        throw new ExportError(`${name}: manifest ${d}: ${errorText(e)}`);
      }
      if (refs.kind === 'index') {
        if (depth >= MAX_INDEX_DEPTH) throw new ExportError(`${name}: indexes nested too deep`);
        for (const child of refs.children) {
          const cm = await storage.getManifest(child.digest);
          if (!cm) {
            // Prefetched with --platform, or only some platforms were ever pulled: export what is cached.
            c.warnings.push(`${name}: ${formatPlatform(child.platform)} (${child.digest}) is not cached; exported without it`);
            continue;
          }
          await walk(child.digest, cm, depth + 1);
        }
        return;
      }
      for (const b of [...(refs.config ? [refs.config] : []), ...refs.layers]) {
        const stat = await storage.statBlob(b.digest);
        if (!stat) throw new ExportError(`${name}: blob ${b.digest} is not in the cache (prefetch the image first)`);
        if (b.size !== undefined && stat.size !== b.size)
          throw new ExportError(`${name}: cached blob ${b.digest} has ${stat.size} bytes, the manifest says ${b.size}`);
        c.blobs.set(b.digest, stat.size);
        if (!mine.has(b.digest)) {
          mine.add(b.digest);
          image.blobs++;
          image.bytes += stat.size;
        }
      }
    };
    await walk(digest, top, 0);
    c.images.push(image);
    c.index.push({ mediaType: top.mediaType, digest, size: top.bytes.length, annotations: { [REF_NAME]: name, [CONTAINERD_NAME]: name } });
  }
  return c;
}

/** `blobs/` and `blobs/<alg>/` for every algorithm used, as `skopeo copy ... oci-archive:` writes them. */
function directories(c: Collected): string[] {
  const algorithms = new Set([...c.manifests.keys(), ...c.blobs.keys()].map((d) => d.slice(0, d.indexOf(':'))));
  return ['blobs/', ...[...algorithms].sort().map((a) => `blobs/${a}/`)];
}
