import { errorText } from '../../../error-text.js';
import { formatImageReference, parseImageReference, type ImageReference } from '../../../oci/image-reference.js';
import { ImportError } from './import-error.js';
import type { Plan } from './plan.js';

/** `--as [NAMESPACE/]REPOSITORY[:TAG]`: a reference without a digest. */
export function parseAs(text: string): ImageReference {
  let ref: ImageReference;
  try {
    ref = parseImageReference(text, { defaultTag: undefined });
  } catch (e) {
    throw new ImportError(`--as: ${errorText(e)}`);
  }
  if (ref.digest !== undefined) throw new ImportError('--as takes [NAMESPACE/]REPOSITORY[:TAG], not a digest');
  return ref;
}

/** Decides the tags each image gets: the archive's names, or `--as`. */
export function assignNames(plan: Plan, as: ImageReference | undefined): void {
  const taken = new Map<string, string>();
  for (const image of plan.images) {
    if (as) {
      if (as.tag !== undefined && plan.images.length > 1) {
        throw new ImportError(
          `--as ${formatImageReference(as)}: the archive holds ${plan.images.length} images; give --as REPOSITORY (no tag) to keep their tags`,
        );
      }
      const tags =
        as.tag !== undefined
          ? [as.tag]
          : unique([...image.archiveNames.flatMap((n) => (n.tag !== undefined ? [n.tag] : [])), ...image.bareTags]);
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
        plan.warnings.push(
          `image ${image.digest} has no name in the archive: imported untagged and linked to no repository, so the mirror serves it only where an upstream confirms its digests (import again with --as)`,
        );
      }
    }
    for (const n of image.names) {
      if (n.tag === undefined) continue;
      const key = formatImageReference(n);
      const other = taken.get(key);
      if (other !== undefined && other !== image.digest)
        throw new ImportError(`${key} names two different images in the archive (${other}, ${image.digest})`);
      taken.set(key, image.digest);
    }
  }
}

function unique(values: string[]): string[] {
  return [...new Set(values)];
}
