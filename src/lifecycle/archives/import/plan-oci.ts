import { errorText } from '../../../error-text.js';
import { parseImageReference } from '../../../oci/image-reference.js';
import { OCI_INDEX, detectManifestMediaType } from '../../../oci/media-types.js';
import { manifestRefs, type Descriptor } from '../../manifest-refs.js';
import { layoutBlobPath } from '../archive-entries.js';
import type { EntryRecord } from './archive-contents.js';
import { ImportError, parseJson } from './import-error.js';
import { MAX_MANIFEST_BYTES } from '../../../oci/limits.js';
import { MAX_METADATA } from './limits.js';
import { emptyPlan, type Plan, type PlanSource, type PlannedImage } from './plan-types.js';

const MAX_INDEX_DEPTH = 4;
const REF_NAME = 'org.opencontainers.image.ref.name';
const CONTAINERD_NAME = 'io.containerd.image.name';

/**
 * Plans an OCI image layout: every image index.json lists, walked down to its blobs. Manifests are kept
 * byte for byte; each must be in the archive (or the cache) with the size its descriptor says, except
 * an index's children, which may be left out (that platform is then not imported, with a warning).
 */
export async function planOci(source: PlanSource): Promise<Plan> {
  return new OciPlanner(source).plan();
}

class OciPlanner {
  private readonly result = emptyPlan('oci-archive');

  constructor(private readonly source: PlanSource) {}

  async plan(): Promise<Plan> {
    const { contents } = this.source;
    const plan = this.result;
    const layout = parseJson(await contents.bytes(contents.entry('oci-layout') as EntryRecord, MAX_METADATA), 'oci-layout') as {
      imageLayoutVersion?: unknown;
    };
    if (typeof layout.imageLayoutVersion !== 'string') throw new ImportError('oci-layout: no imageLayoutVersion');
    const indexBytes = await contents.bytes(contents.entry('index.json') as EntryRecord, MAX_METADATA);
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
        image = {
          digest: desc.digest,
          mediaType: '',
          size: 0,
          archiveNames: [],
          bareTags: [],
          manifests: new Set(),
          blobs: new Map(),
          names: [],
        };
        const loaded = await this.loadManifest(desc, true);
        if (!loaded) continue;
        image.mediaType = loaded.mediaType;
        image.size = loaded.bytes.length;
        await this.planManifest(desc, loaded, 0, image);
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
  private async loadManifest(desc: Descriptor, required: boolean): Promise<{ mediaType: string; bytes: Buffer } | undefined> {
    const { contents, storage } = this.source;
    const e = contents.entry(layoutBlobPath(desc.digest));
    let bytes: Buffer | undefined;
    let storedType: string | undefined;
    if (e) {
      bytes = await contents.bytes(e, MAX_MANIFEST_BYTES);
    } else {
      const cached = await storage.getManifest(desc.digest);
      if (cached) {
        bytes = cached.bytes;
        storedType = cached.mediaType;
      }
    }
    if (!bytes) {
      if (required) throw new ImportError(`manifest ${desc.digest} is not in the archive`);
      this.result.warnings.push(
        `manifest ${desc.digest} (${platformText(desc)}) is listed by its index but not in the archive: that platform is not imported`,
      );
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
        const loaded = await this.loadManifest(child, false);
        if (loaded) await this.planManifest(child, loaded, depth + 1, image);
      }
    } else {
      for (const blob of [...(refs.config ? [refs.config] : []), ...refs.layers]) {
        await this.planBlob(blob, `manifest ${desc.digest}`);
        image.blobs.set(blob.digest, blob.size ?? 0);
      }
    }
    image.manifests.add(desc.digest);
    this.result.manifests.set(desc.digest, manifest);
  }

  /** Checks that a blob a manifest lists is in the archive (or already cached) with the right size. */
  private async planBlob(blob: Descriptor, of: string): Promise<void> {
    const { contents, storage, ledger } = this.source;
    const e = contents.entry(layoutBlobPath(blob.digest));
    if (e) {
      if (blob.size !== undefined && e.size !== blob.size)
        throw new ImportError(`${of}: blob ${blob.digest} has ${e.size} bytes, the manifest says ${blob.size}`);
      if (e.bytes) this.result.blobWrites.set(e.digest, e.bytes);
      return;
    }
    const cached = await storage.statBlob(blob.digest);
    if (!cached) throw new ImportError(`${of}: blob ${blob.digest} is not in the archive`);
    if (blob.size !== undefined && cached.size !== blob.size)
      throw new ImportError(`${of}: cached blob ${blob.digest} has ${cached.size} bytes, the manifest says ${blob.size}`);
    ledger.markReused(blob.digest);
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
