import type { ImageReference } from '../../../oci/image-reference.js';
import type { Storage } from '../../../storage/storage.js';
import type { ArchiveContents } from './archive-contents.js';
import type { ImportLedger } from './import-ledger.js';

/** What an import plans to store; its own module so that the planners and planImport do not import each other. */

export type ArchiveFormat = 'docker-archive' | 'oci-archive';

export interface PlannedImage {
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

/** What an import will store, checked against the archive before anything of it becomes visible. */
export interface Plan {
  format: ArchiveFormat;
  /** Children before parents, so a stored index never points to a manifest not yet stored. */
  manifests: Map<string, { mediaType: string; bytes: Buffer }>;
  /** Small blobs held in memory (configs) to write. */
  blobWrites: Map<string, Buffer>;
  images: PlannedImage[];
  warnings: string[];
}

/** What planning reads: the archive's files, and the cache for what the archive leaves out. */
export interface PlanSource {
  storage: Storage;
  contents: ArchiveContents;
  ledger: ImportLedger;
}

export function emptyPlan(format: ArchiveFormat): Plan {
  return { format, manifests: new Map(), blobWrites: new Map(), images: [], warnings: [] };
}
