import { formatImageReference } from '../../../oci/image-reference.js';
import type { ArchiveFormat, Plan } from './plan.js';

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
  format: ArchiveFormat;
  images: ImportedImage[];
  /** Blobs written to the cache by this import / already there. */
  storedBlobs: number;
  reusedBlobs: number;
  warnings: string[];
}

/** The summary of a committed import: each image with its tags and sizes, and which of its blobs were new. */
export function importReport(plan: Plan, referenced: ReadonlySet<string>, reused: ReadonlySet<string>): ImportReport {
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
    storedBlobs: [...referenced].filter((d) => !reused.has(d)).length,
    reusedBlobs: [...referenced].filter((d) => reused.has(d)).length,
    warnings: plan.warnings,
  };
}
