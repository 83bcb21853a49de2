import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import type { Logger } from 'pino';
import tar from 'tar-stream';
import { errorText } from '../error-text.js';
type TarEntry = AsyncIterable<unknown> & { header: tar.Header };
import { createDigester, digestOf, tryParseDigest, type DigestAlgorithm } from '../oci/digest.js';
import { formatImageReference, parseImageReference, type ImageReference } from '../oci/image-reference.js';
import { MAX_MANIFEST_BYTES } from '../oci/limits.js';
import { DOCKER_IMAGE_CONFIG, DOCKER_LAYER, DOCKER_LAYER_GZIP, DOCKER_MANIFEST, OCI_INDEX, detectManifestMediaType } from '../oci/media-types.js';
import { readCapped } from '../read-capped.js';
import type { Storage } from '../storage/storage.js';
import {
  GunzipHasher,
  gunzipDigest,
  hexDigest,
  isGzip,
  layoutBlobDigest,
  layoutBlobPath,
  linkTarget,
  looksLikeJson,
  namedDigest,
  normalizeEntryName,
} from './archive-entries.js';
import { manifestRefs, type Descriptor } from './manifest-refs.js';

/**
 * Loads an image tarball into the cache, for air-gapped sites:
 *
 * - `docker save` / `skopeo copy ... docker-archive:` (manifest.json + config + layer tars). Such an
 *   archive holds no registry manifest, so a Docker schema2 manifest is built whose descriptors name the
 *   blobs exactly as stored (uncompressed layers stay `...rootfs.diff.tar`): its digest differs from the
 *   registry's when the archive lost the compressed layers, but the config digest and the diff_ids
 *   are the original ones. Each layer is checked against the config's diff_id.
 * - an OCI image layout tarball (`skopeo copy ... oci-archive:`, `export`): manifests and blobs are
 *   kept byte for byte, so every digest is the original one. Each blob is checked against its name.
 *
 * Entries may come in any order (manifest.json often comes last), so every blob is streamed into storage
 * as it is met, hashed on the way and committed only when it matches the digest its name claims; a
 * blob without such a name (`<id>/layer.tar`) goes through a local spool file first. Small JSON files
 * (manifests, configs) are kept in memory until the end, when the manifests are resolved, checked and
 * stored, and only then the tags. Any failure deletes every blob and manifest this import added: a
 * refused archive leaves the cache as it was.
 */

export interface ImportArchiveOptions {
  storage: Storage;
  /** `[NAMESPACE/]REPOSITORY[:TAG]`: where to register the image instead of the names in the archive. */
  as?: string | undefined;
  /** Directory for spool files (blobs whose digest is not in their name). Default: a temp dir. */
  spoolDir?: string | undefined;
  log?: Logger | undefined;
  now?: () => number;
}

export interface ImportedImage {
  digest: string;
  mediaType: string;
  /** Full references registered as tags (`docker.io/library/alpine:3.20`); empty when imported untagged. */
  names: string[];
  manifests: number;
  blobs: number;
  bytes: number;
}

export interface ImportReport {
  format: 'docker-archive' | 'oci-archive';
  images: ImportedImage[];
  /** Blobs written to the cache by this import / already there. */
  storedBlobs: number;
  reusedBlobs: number;
  warnings: string[];
}

export class ImportError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ImportError';
  }
}

/** manifest.json / index.json of a large multi-image archive. */
const MAX_METADATA = 16 * 1024 * 1024;
/** JSON entries kept in memory at most, in total; beyond, they are streamed into storage like any blob. */
const MAX_BUFFERED = 64 * 1024 * 1024;
const MAX_INDEX_DEPTH = 4;
const METADATA_FILES = new Set(['manifest.json', 'index.json', 'oci-layout', 'repositories']);

const REF_NAME = 'org.opencontainers.image.ref.name';
const CONTAINERD_NAME = 'io.containerd.image.name';

/** One regular file of the archive. */
interface EntryRecord {
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

interface PlannedImage {
  digest: string;
  mediaType: string;
  size: number;
  /** Names the archive gives (tag or digest references). */
  archiveNames: ImageReference[];
  /** OCI ref.name annotations that are just a tag. */
  bareTags: string[];
  manifests: Set<string>;
  blobs: Map<string, number>;
  names: ImageReference[];
}

interface Plan {
  format: ImportReport['format'];
  /** Children before parents, so a stored index never points to a manifest not yet stored. */
  manifests: Map<string, { mediaType: string; bytes: Buffer }>;
  /** Small blobs held in memory (configs) to write. */
  blobWrites: Map<string, Buffer>;
  images: PlannedImage[];
  warnings: string[];
}

/** Imports a docker-archive or OCI-archive tarball (optionally gzip-compressed as a whole). */
export async function importArchive(file: string, options: ImportArchiveOptions): Promise<ImportReport> {
  const as = options.as === undefined ? undefined : parseAs(options.as);
  const session = new ImportSession(options);
  try {
    await session.read(file);
    const plan = await session.plan(as);
    return await session.commit(plan);
  } catch (e) {
    await session.rollback();
    if (e instanceof ImportError) throw e;
    throw new ImportError(errorText(e), { cause: e });
  } finally {
    await session.cleanup();
  }
}

function parseAs(text: string): ImageReference {
  let ref: ImageReference;
  try {
    ref = parseImageReference(text, { defaultTag: undefined });
  } catch (e) {
    throw new ImportError(`--as: ${errorText(e)}`);
  }
  if (ref.digest !== undefined) throw new ImportError('--as takes [NAMESPACE/]REPOSITORY[:TAG], not a digest');
  return ref;
}

class ImportSession {
  private readonly storage: Storage;
  private readonly entries = new Map<string, EntryRecord>();
  private readonly links = new Map<string, string>();
  /** Blobs this import committed that were not in the cache before (deleted again on failure). */
  private readonly added = new Set<string>();
  private readonly addedManifests = new Set<string>();
  /** Blobs found in the cache already. */
  private readonly reused = new Set<string>();
  private buffered = 0;
  private spoolDir: string | undefined;
  private ownSpoolDir = false;
  private readonly now: () => number;

  constructor(private readonly options: ImportArchiveOptions) {
    this.storage = options.storage;
    this.now = options.now ?? Date.now;
  }

  // ---- reading ----

  async read(file: string): Promise<void> {
    const head = Buffer.alloc(2);
    const fh = await open(file, 'r').catch((e: unknown) => {
      throw new ImportError(`cannot open ${file}: ${errorText(e)}`);
    });
    try {
      await fh.read(head, 0, 2, 0);
    } finally {
      await fh.close();
    }
    const source = createReadStream(file, { highWaterMark: 1024 * 1024 });
    const extract = tar.extract();
    const piping = isGzip(head) ? pipeline(source, createGunzip(), extract) : pipeline(source, extract);
    // Awaited below; a failure here also surfaces through the entry iterator.
    piping.catch(() => undefined);
    let entries = 0;
    try {
      for await (const entry of extract) {
        entries++;
        await this.consume(entry);
      }
      await piping;
    } catch (e) {
      source.destroy();
      if (e instanceof ImportError) throw e;
      throw new ImportError(`${file}: not a readable tar archive (${errorText(e)})`, { cause: e });
    }
    if (entries === 0) throw new ImportError(`${file}: empty archive`);
  }

  private async consume(entry: TarEntry): Promise<void> {
    const header = entry.header;
    const name = normalizeEntryName(header.name);
    if (name !== undefined && (header.type === 'symlink' || header.type === 'link') && header.linkname) {
      const target = linkTarget(name, header.linkname, header.type);
      if (target !== undefined) this.links.set(name, target);
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
      this.entries.set(name, { name, digest, size: bytes.length, gzip: false, diffId: claimed?.algorithm === 'sha512' ? undefined : digestOf(bytes), bytes });
      return;
    }
    const gzip = isGzip(firstChunk);
    // Docker archives (not OCI layouts) describe layers by diff_id: hash the gunzipped bytes of gzip layers.
    const wantDiffId = gzip && !layoutDigest;
    // A name is trusted as the writer's digest when a mismatch can only mean corruption.
    if (layoutDigest || (claimed && !gzip)) {
      await this.storeClaimed(name, claimed as NonNullable<typeof claimed>, chunks(), gzip, wantDiffId);
    } else {
      await this.storeSpooled(name, chunks(), gzip, wantDiffId);
    }
  }

  /** Streams an entry into a writer for the digest its name claims; commits only on a match. */
  private async storeClaimed(
    name: string,
    claimed: { algorithm: DigestAlgorithm; value: string },
    chunks: AsyncIterable<Buffer>,
    gzip: boolean,
    wantDiffId: boolean,
  ): Promise<void> {
    const existing = await storing(name, this.storage.statBlob(claimed.value));
    const writer = existing ? undefined : await storing(name, this.storage.createBlobWriter(claimed.value));
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
        this.added.add(digest);
      } else {
        this.markReused(digest);
      }
      this.entries.set(name, { name, digest, size, gzip, diffId, bytes: undefined });
    } catch (e) {
      await writer?.abort().catch(() => undefined);
      throw e;
    } finally {
      diff?.destroy();
    }
  }

  /** An entry whose digest is unknown until its end: hash it into a spool file, then copy it into storage. */
  private async storeSpooled(name: string, chunks: AsyncIterable<Buffer>, gzip: boolean, wantDiffId: boolean): Promise<void> {
    const path = join(await this.spool(), `${randomBytes(8).toString('hex')}.part`);
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
      if (await storing(name, this.storage.statBlob(digest))) {
        this.markReused(digest);
      } else {
        // Re-hashed on the way from the spool: a local disk that lied is caught too.
        await storing(name, this.writeBlob(digest, createReadStream(path, { highWaterMark: 1024 * 1024 })));
      }
      this.entries.set(name, { name, digest, size, gzip, diffId, bytes: undefined });
    } finally {
      diff?.destroy();
      await rm(path, { force: true }).catch(() => undefined);
    }
  }

  private async writeBlob(digest: string, source: Readable | Buffer): Promise<void> {
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

  private markReused(digest: string): void {
    if (!this.added.has(digest)) this.reused.add(digest);
  }

  private async spool(): Promise<string> {
    if (!this.spoolDir) {
      if (this.options.spoolDir) {
        this.spoolDir = this.options.spoolDir;
      } else {
        this.spoolDir = await mkdtemp(join(tmpdir(), 'oci-registry-import-'));
        this.ownSpoolDir = true;
      }
    }
    return this.spoolDir;
  }

  // ---- resolving ----

  /** The regular-file entry at `name`, following symlinks and hard links. */
  private entry(name: string): EntryRecord | undefined {
    let current = normalizeEntryName(name);
    for (let i = 0; i < 16 && current !== undefined; i++) {
      const e = this.entries.get(current);
      if (e) return e;
      current = this.links.get(current);
    }
    return undefined;
  }

  /** The bytes of a small entry (from memory, or read back from storage when it was streamed there). */
  private async entryBytes(e: EntryRecord, limit: number): Promise<Buffer> {
    if (e.bytes) return e.bytes;
    const stream = await this.storage.readBlob(e.digest);
    if (!stream) throw new ImportError(`${e.name}: vanished from the cache during the import`);
    return readCapped(stream, limit, e.name);
  }

  private async diffIdOf(e: EntryRecord): Promise<string | undefined> {
    if (e.diffId !== undefined || !e.gzip) return e.diffId;
    const stream = await this.storage.readBlob(e.digest);
    e.diffId = stream ? await gunzipDigest(stream) : undefined;
    return e.diffId;
  }

  async plan(as: ImageReference | undefined): Promise<Plan> {
    const plan: Plan = this.entry('oci-layout') && this.entry('index.json') ? await this.planOci() : await this.planDocker();
    assignNames(plan, as);
    return plan;
  }

  private async planOci(): Promise<Plan> {
    const plan: Plan = { format: 'oci-archive', manifests: new Map(), blobWrites: new Map(), images: [], warnings: [] };
    const layout = parseJson(await this.entryBytes(this.entry('oci-layout') as EntryRecord, MAX_METADATA), 'oci-layout') as { imageLayoutVersion?: unknown };
    if (typeof layout.imageLayoutVersion !== 'string') throw new ImportError('oci-layout: no imageLayoutVersion');
    const indexBytes = await this.entryBytes(this.entry('index.json') as EntryRecord, MAX_METADATA);
    let top: Descriptor[];
    try {
      const refs = manifestRefs(OCI_INDEX, indexBytes);
      if (refs.kind !== 'index') throw new Error('not an index');
      top = refs.children;
    } catch (e) {
      throw new ImportError(`index.json: ${errorText(e)}`);
    }
    if (top.length === 0) throw new ImportError('index.json lists no images');
    const byDigest = new Map<string, PlannedImage>();
    for (const desc of top) {
      let image = byDigest.get(desc.digest);
      if (!image) {
        image = { digest: desc.digest, mediaType: '', size: 0, archiveNames: [], bareTags: [], manifests: new Set(), blobs: new Map(), names: [] };
        const loaded = await this.loadManifest(desc, true, plan);
        if (!loaded) continue;
        image.mediaType = loaded.mediaType;
        image.size = loaded.bytes.length;
        await this.planManifest(desc, loaded, 0, image, plan);
        byDigest.set(desc.digest, image);
        plan.images.push(image);
      }
      const full = desc.annotations?.[CONTAINERD_NAME];
      const refName = desc.annotations?.[REF_NAME];
      const name = full ?? refName;
      if (name === undefined) continue;
      if (full === undefined && !/[/:@]/.test(name)) {
        image.bareTags.push(name);
      } else {
        try {
          image.archiveNames.push(parseImageReference(name, { defaultTag: undefined }));
        } catch (e) {
          throw new ImportError(`index.json: image name ${JSON.stringify(name)}: ${errorText(e)}`);
        }
      }
    }
    return plan;
  }

  /** A manifest's bytes from the archive (or the cache); undefined (with a warning) for an absent index child. */
  private async loadManifest(desc: Descriptor, required: boolean, plan: Plan): Promise<{ mediaType: string; bytes: Buffer } | undefined> {
    const e = this.entry(layoutBlobPath(desc.digest));
    let bytes: Buffer | undefined;
    let storedType: string | undefined;
    if (e) {
      bytes = await this.entryBytes(e, MAX_MANIFEST_BYTES);
    } else {
      const cached = await this.storage.getManifest(desc.digest);
      if (cached) {
        bytes = cached.bytes;
        storedType = cached.mediaType;
      }
    }
    if (!bytes) {
      if (required) throw new ImportError(`manifest ${desc.digest} is not in the archive`);
      plan.warnings.push(`manifest ${desc.digest} (${platformText(desc)}) is listed by its index but not in the archive: that platform is not imported`);
      return undefined;
    }
    if (desc.size !== undefined && bytes.length !== desc.size) {
      throw new ImportError(`manifest ${desc.digest}: ${bytes.length} bytes, its descriptor says ${desc.size}`);
    }
    return { mediaType: storedType ?? ownMediaType(bytes) ?? desc.mediaType ?? detectManifestMediaType(undefined, bytes), bytes };
  }

  private async planManifest(
    desc: Descriptor,
    manifest: { mediaType: string; bytes: Buffer },
    depth: number,
    image: PlannedImage,
    plan: Plan,
  ): Promise<void> {
    let refs;
    try {
      refs = manifestRefs(manifest.mediaType, manifest.bytes);
    } catch (e) {
      throw new ImportError(`manifest ${desc.digest}: ${errorText(e)}`);
    }
    if (refs.kind === 'index') {
      if (depth >= MAX_INDEX_DEPTH) throw new ImportError(`manifest ${desc.digest}: indexes nested too deep`);
      for (const child of refs.children) {
        const loaded = await this.loadManifest(child, false, plan);
        if (loaded) await this.planManifest(child, loaded, depth + 1, image, plan);
      }
    } else {
      for (const blob of [...(refs.config ? [refs.config] : []), ...refs.layers]) {
        await this.planBlob(blob, `manifest ${desc.digest}`, plan);
        image.blobs.set(blob.digest, blob.size ?? 0);
      }
    }
    image.manifests.add(desc.digest);
    plan.manifests.set(desc.digest, manifest);
  }

  /** Checks that a blob a manifest lists is in the archive (or already cached) with the right size. */
  private async planBlob(blob: Descriptor, of: string, plan: Plan): Promise<void> {
    const e = this.entry(layoutBlobPath(blob.digest));
    if (e) {
      if (blob.size !== undefined && e.size !== blob.size) throw new ImportError(`${of}: blob ${blob.digest} has ${e.size} bytes, the manifest says ${blob.size}`);
      if (e.bytes) plan.blobWrites.set(e.digest, e.bytes);
      return;
    }
    const cached = await this.storage.statBlob(blob.digest);
    if (!cached) throw new ImportError(`${of}: blob ${blob.digest} is not in the archive`);
    if (blob.size !== undefined && cached.size !== blob.size) throw new ImportError(`${of}: cached blob ${blob.digest} has ${cached.size} bytes, the manifest says ${blob.size}`);
    this.markReused(blob.digest);
  }

  private async planDocker(): Promise<Plan> {
    const plan: Plan = { format: 'docker-archive', manifests: new Map(), blobWrites: new Map(), images: [], warnings: [] };
    const manifestEntry = this.entry('manifest.json');
    if (!manifestEntry) {
      throw new ImportError('not an image archive: no manifest.json (docker-archive) and no oci-layout + index.json (OCI layout)');
    }
    const list = parseJson(await this.entryBytes(manifestEntry, MAX_METADATA), 'manifest.json');
    if (!Array.isArray(list) || list.length === 0) throw new ImportError('manifest.json: expected a non-empty list of images');
    for (const [i, raw] of list.entries()) {
      const item = raw as { Config?: unknown; RepoTags?: unknown; Layers?: unknown };
      const where = `manifest.json[${i}]`;
      if (typeof item.Config !== 'string' || !Array.isArray(item.Layers) || !item.Layers.every((l) => typeof l === 'string')) {
        throw new ImportError(`${where}: expected Config and Layers`);
      }
      const configEntry = this.entry(item.Config);
      if (!configEntry) throw new ImportError(`${where}: config ${item.Config} is not in the archive`);
      const configBytes = await this.entryBytes(configEntry, MAX_METADATA);
      const config = parseJson(configBytes, item.Config) as { rootfs?: { diff_ids?: unknown } };
      const diffIds = config.rootfs?.diff_ids;
      if (!Array.isArray(diffIds) || !diffIds.every((d) => typeof d === 'string')) throw new ImportError(`${item.Config}: config has no rootfs.diff_ids`);
      if (diffIds.length !== item.Layers.length) {
        throw new ImportError(`${where}: ${item.Layers.length} layers, but the config lists ${diffIds.length} diff_ids`);
      }
      const blobs = new Map<string, number>();
      if (configEntry.bytes) plan.blobWrites.set(configEntry.digest, configEntry.bytes);
      blobs.set(configEntry.digest, configEntry.size);
      const layers: { mediaType: string; size: number; digest: string }[] = [];
      for (const [j, path] of (item.Layers as string[]).entries()) {
        const e = this.entry(path);
        if (!e) throw new ImportError(`${where}: layer ${path} is not in the archive`);
        const diffId = await this.diffIdOf(e);
        if (diffId !== diffIds[j]) {
          throw new ImportError(
            `layer ${path} does not match its diff_id in the config (expected ${diffIds[j] as string}, got ${diffId ?? 'not a gzip stream'}); nothing imported`,
          );
        }
        if (e.bytes) plan.blobWrites.set(e.digest, e.bytes);
        layers.push({ mediaType: e.gzip ? DOCKER_LAYER_GZIP : DOCKER_LAYER, size: e.size, digest: e.digest });
        blobs.set(e.digest, e.size);
      }
      const manifest = Buffer.from(
        JSON.stringify(
          {
            schemaVersion: 2,
            mediaType: DOCKER_MANIFEST,
            config: { mediaType: DOCKER_IMAGE_CONFIG, size: configEntry.size, digest: configEntry.digest },
            layers,
          },
          null,
          3,
        ),
      );
      const digest = digestOf(manifest);
      plan.manifests.set(digest, { mediaType: DOCKER_MANIFEST, bytes: manifest });
      const archiveNames: ImageReference[] = [];
      for (const tag of Array.isArray(item.RepoTags) ? item.RepoTags : []) {
        if (typeof tag !== 'string') continue;
        try {
          archiveNames.push(parseImageReference(tag, { defaultTag: undefined }));
        } catch (e) {
          throw new ImportError(`${where}: RepoTags entry ${JSON.stringify(tag)}: ${errorText(e)}`);
        }
      }
      const existing = plan.images.find((img) => img.digest === digest);
      if (existing) {
        existing.archiveNames.push(...archiveNames);
        continue;
      }
      plan.images.push({
        digest,
        mediaType: DOCKER_MANIFEST,
        size: manifest.length,
        archiveNames,
        bareTags: [],
        manifests: new Set([digest]),
        blobs,
        names: [],
      });
    }
    return plan;
  }

  // ---- committing ----

  async commit(plan: Plan): Promise<ImportReport> {
    const nowDate = new Date(this.now());
    for (const [digest, bytes] of plan.blobWrites) {
      if (this.added.has(digest) || this.reused.has(digest)) continue;
      if (await this.storage.statBlob(digest)) this.markReused(digest);
      else await this.writeBlob(digest, bytes);
    }
    const referenced = new Set(plan.images.flatMap((img) => [...img.blobs.keys()]));
    // Blobs stored while reading that no imported manifest uses (legacy duplicates, large manifests read back).
    for (const digest of [...this.added]) {
      if (referenced.has(digest)) continue;
      await this.storage.deleteBlob(digest).catch(() => undefined);
      this.added.delete(digest);
    }
    // Blobs already cached count as fresh now: an offline mirror serves them without asking upstream.
    for (const digest of referenced) {
      if (this.reused.has(digest)) await this.storage.touchBlob(digest).catch(() => undefined);
    }
    for (const [digest, m] of plan.manifests) {
      if (await this.storage.getManifest(digest)) continue;
      await this.storage.putManifest(digest, { mediaType: m.mediaType, bytes: m.bytes, fetchedAt: nowDate });
      this.addedManifests.add(digest);
    }
    // Tags last: from here on nothing is rolled back, every tag points to a stored manifest.
    this.added.clear();
    this.addedManifests.clear();
    // The operator says which repository each image belongs to: link its manifests and blobs there, so
    // the mirror serves them through that repository (offline too), and through no other without a
    // HEAD to that one's upstream.
    for (const image of plan.images) {
      const repos = new Map(image.names.map((n) => [`${n.namespace}/${n.repository}`, { namespace: n.namespace, repository: n.repository }]));
      for (const repo of repos.values()) {
        for (const digest of image.manifests) await this.storage.putLink(repo, 'manifest', digest, nowDate);
        for (const digest of image.blobs.keys()) await this.storage.putLink(repo, 'blob', digest, nowDate);
      }
    }
    for (const image of plan.images) {
      for (const name of image.names) {
        if (name.tag === undefined) continue;
        await this.storage.putTag(
          { namespace: name.namespace, repository: name.repository },
          name.tag,
          { digest: image.digest, mediaType: image.mediaType, size: image.size, checkedAt: nowDate },
        );
      }
    }
    for (const w of plan.warnings) this.options.log?.warn({ warning: w }, 'import');
    return {
      format: plan.format,
      images: plan.images.map((img) => ({
        digest: img.digest,
        mediaType: img.mediaType,
        names: img.names.filter((n) => n.tag !== undefined).map(formatImageReference),
        manifests: img.manifests.size,
        blobs: img.blobs.size,
        bytes: [...img.blobs.values()].reduce((a, b) => a + b, 0),
      })),
      storedBlobs: [...referenced].filter((d) => !this.reused.has(d)).length,
      reusedBlobs: [...referenced].filter((d) => this.reused.has(d)).length,
      warnings: plan.warnings,
    };
  }

  /** Deletes every blob and manifest this import added (after a failure). */
  async rollback(): Promise<void> {
    for (const digest of this.added) await this.storage.deleteBlob(digest).catch(() => undefined);
    for (const digest of this.addedManifests) await this.storage.deleteManifest(digest).catch(() => undefined);
    this.added.clear();
    this.addedManifests.clear();
  }

  async cleanup(): Promise<void> {
    if (this.ownSpoolDir && this.spoolDir) await rm(this.spoolDir, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** Decides the tags each image gets: the archive's names, or `--as`. */
function assignNames(plan: Plan, as: ImageReference | undefined): void {
  const taken = new Map<string, string>();
  for (const image of plan.images) {
    if (as) {
      if (as.tag !== undefined && plan.images.length > 1) {
        throw new ImportError(`--as ${formatImageReference(as)}: the archive holds ${plan.images.length} images; give --as REPOSITORY (no tag) to keep their tags`);
      }
      const tags = as.tag !== undefined ? [as.tag] : unique([...image.archiveNames.flatMap((n) => (n.tag !== undefined ? [n.tag] : [])), ...image.bareTags]);
      if (tags.length === 0) throw new ImportError(`image ${image.digest} has no tag in the archive: give --as REPOSITORY:TAG`);
      image.names = tags.map((tag) => ({ namespace: as.namespace, repository: as.repository, tag, digest: undefined }));
    } else {
      if (image.bareTags.length > 0) {
        throw new ImportError(
          `the archive names image ${image.digest} only by tag (${image.bareTags.join(', ')}): give --as [NAMESPACE/]REPOSITORY to say which repository it belongs to`,
        );
      }
      image.names = image.archiveNames;
      if (!image.names.some((n) => n.tag !== undefined) && image.names.length === 0) {
        plan.warnings.push(`image ${image.digest} has no name in the archive: imported untagged and linked to no repository, so the mirror serves it only where an upstream confirms its digests (import again with --as)`);
      }
    }
    for (const n of image.names) {
      if (n.tag === undefined) continue;
      const key = formatImageReference(n);
      const other = taken.get(key);
      if (other !== undefined && other !== image.digest) throw new ImportError(`${key} names two different images in the archive (${other}, ${image.digest})`);
      taken.set(key, image.digest);
    }
  }
}

/** A storage (or spool) operation: its failure is the cache's problem, not the archive's. */
async function storing<T>(name: string, op: Promise<T>): Promise<T> {
  try {
    return await op;
  } catch (e) {
    if (e instanceof ImportError) throw e;
    throw new ImportError(`cannot store ${name} in the cache: ${errorText(e)}`, { cause: e });
  }
}

function unique(values: string[]): string[] {
  return [...new Set(values)];
}

function parseJson(bytes: Buffer, what: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8')) as unknown;
  } catch {
    throw new ImportError(`${what}: not valid JSON`);
  }
}

/** The `mediaType` a manifest declares itself, if any. */
function ownMediaType(bytes: Buffer): string | undefined {
  try {
    const doc = JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown };
    return typeof doc.mediaType === 'string' && doc.mediaType.length > 0 ? doc.mediaType : undefined;
  } catch {
    return undefined;
  }
}

function platformText(desc: Descriptor): string {
  const p = desc.platform;
  return p ? `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}` : 'no platform';
}
