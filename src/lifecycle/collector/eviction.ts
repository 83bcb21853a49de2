import type { BlobListing, Storage } from '../../storage/storage.js';
import { deleteBlobIfIdle, type DeleteGuard } from './delete-guard.js';

/**
 * Size-bounded eviction: when the blobs together exceed the limit, delete least-recently-used blobs
 * until they fit under the target (the low-water mark). A blob's last use is the later of its modified
 * time (fill or re-validation) and its last access by any replica. Blobs the DeleteGuard protects (in
 * use, or used within the grace window) are skipped; if they alone exceed the target, eviction stops
 * short of it and says so. Manifests and tag records are not touched: a pull of an image whose blobs
 * were evicted re-fetches them transparently.
 */
export interface EvictionOptions {
  storage: Storage;
  blobs: BlobListing[];
  limitBytes: number;
  targetBytes: number;
  guard: DeleteGuard;
  lastAccess: (digest: string) => number | undefined;
  onEvict?: ((blob: { digest: string; size: number; lastUse: number }) => void) | undefined;
}

export interface EvictionReport {
  totalBytes: number;
  finalBytes: number;
  evicted: number;
  evictedBytes: number;
  /** Digests no longer stored (evicted, or found gone). */
  removed: Set<string>;
  /** False when protected blobs kept the total above the target. */
  reachedTarget: boolean;
}

export interface EvictionCandidate {
  digest: string;
  size: number;
  lastUse: number;
}

/** Least recently used first (ties by digest, so the order is stable). */
export function evictionOrder(blobs: BlobListing[], lastAccess: (digest: string) => number | undefined): EvictionCandidate[] {
  return blobs
    .map((b) => ({ digest: b.digest, size: b.size, lastUse: Math.max(b.modified.getTime(), lastAccess(b.digest) ?? 0) }))
    .sort((a, b) => a.lastUse - b.lastUse || (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0));
}

export async function evict(options: EvictionOptions): Promise<EvictionReport> {
  const { storage, guard } = options;
  const totalBytes = options.blobs.reduce((sum, b) => sum + b.size, 0);
  const report: EvictionReport = {
    totalBytes,
    finalBytes: totalBytes,
    evicted: 0,
    evictedBytes: 0,
    removed: new Set(),
    reachedTarget: true,
  };
  if (totalBytes <= options.limitBytes) return report;
  const graceStart = guard.now() - guard.graceMs;
  for (const candidate of evictionOrder(options.blobs, options.lastAccess)) {
    if (report.finalBytes <= options.targetBytes) break;
    // Sorted by last use: from here on everything was used within the grace window.
    if (candidate.lastUse > graceStart) break;
    const outcome = await deleteBlobIfIdle(storage, candidate.digest, guard);
    if (outcome === 'kept') continue;
    report.removed.add(candidate.digest);
    report.finalBytes -= candidate.size;
    if (outcome === 'deleted') {
      report.evicted++;
      report.evictedBytes += candidate.size;
      options.onEvict?.(candidate);
    }
  }
  report.reachedTarget = report.finalBytes <= options.targetBytes;
  return report;
}
