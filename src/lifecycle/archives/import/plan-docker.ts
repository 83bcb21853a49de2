import { DOCKER_IMAGE_CONFIG, DOCKER_LAYER, DOCKER_LAYER_GZIP } from '../../../oci/media-types.js';
import { errorText } from '../../../error-text.js';
import { digestOf } from '../../../oci/digest.js';
import { parseImageReference, type ImageReference } from '../../../oci/image-reference.js';
import { DOCKER_MANIFEST } from '../../../oci/media-types.js';
import { ImportError, parseJson } from './import-error.js';
import { MAX_METADATA } from './limits.js';
import { emptyPlan, type Plan, type PlanSource } from './plan-types.js';

/**
 * Plans a docker-archive: for each image of manifest.json, its config and layers, each layer checked
 * against the config's diff_id, and a Docker schema2 manifest built over them, naming the blobs exactly
 * as stored (there is no registry manifest in such an archive).
 */
export async function planDocker(source: PlanSource): Promise<Plan> {
  const { contents } = source;
  const plan = emptyPlan('docker-archive');
  const manifestEntry = contents.entry('manifest.json');
  if (!manifestEntry) {
    throw new ImportError('not an image archive: no manifest.json (docker-archive) and no oci-layout + index.json (OCI layout)');
  }
  const list = parseJson(await contents.bytes(manifestEntry, MAX_METADATA), 'manifest.json');
  if (!Array.isArray(list) || list.length === 0) throw new ImportError('manifest.json: expected a non-empty list of images');
  for (const [i, raw] of list.entries()) {
    const item = raw as { Config?: unknown; RepoTags?: unknown; Layers?: unknown };
    const where = `manifest.json[${i}]`;
    if (typeof item.Config !== 'string' || !Array.isArray(item.Layers) || !item.Layers.every((l) => typeof l === 'string')) {
      throw new ImportError(`${where}: expected Config and Layers`);
    }
    const configEntry = contents.entry(item.Config);
    if (!configEntry) throw new ImportError(`${where}: config ${item.Config} is not in the archive`);
    const configBytes = await contents.bytes(configEntry, MAX_METADATA);
    const config = parseJson(configBytes, item.Config) as { rootfs?: { diff_ids?: unknown } };
    const diffIds = config.rootfs?.diff_ids;
    if (!Array.isArray(diffIds) || !diffIds.every((d) => typeof d === 'string'))
      throw new ImportError(`${item.Config}: config has no rootfs.diff_ids`);
    if (diffIds.length !== item.Layers.length) {
      throw new ImportError(`${where}: ${item.Layers.length} layers, but the config lists ${diffIds.length} diff_ids`);
    }
    const blobs = new Map<string, number>();
    if (configEntry.bytes) plan.blobWrites.set(configEntry.digest, configEntry.bytes);
    blobs.set(configEntry.digest, configEntry.size);
    const layers: { mediaType: string; size: number; digest: string }[] = [];
    for (const [j, path] of (item.Layers as string[]).entries()) {
      const e = contents.entry(path);
      if (!e) throw new ImportError(`${where}: layer ${path} is not in the archive`);
      const diffId = await contents.diffIdOf(e);
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
