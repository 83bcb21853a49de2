import type { BlobListing, ManifestListing, RepositoryRef, Storage } from '../../storage/storage.js';
import { deleteBlobIfIdle, type DeleteGuard } from './delete-guard.js';
import { manifestRefs } from '../manifest-refs.js';

/**
 * The expiry rule, shared by the server's collector (`--cache-expiry`) and `prune --older-than`.
 * Given a cutoff (now - N, and never later than now - grace):
 *
 * - a tag record is deleted when its last use is before the cutoff, last use being the later of its
 *   checkedAt (when upstream last confirmed it) and the last access of the manifest it points to;
 *   or when the manifest it points to is not stored (re-checked with a read before deleting);
 *   a record used within the grace window is always kept;
 * - a blob is deleted when its last use (the later of its modified time, i.e. fill or re-validation,
 *   and its last access by any replica) is before the cutoff, through the DeleteGuard;
 * - manifests are kept by the collector (tiny, and what makes offline pulls and re-fetches cheap);
 *   with `manifests` (prune) a manifest is deleted when no kept tag record reaches it (directly, or as
 *   the child of a reached index) and its last use (fetchedAt or last access) is before the cutoff.
 *
 * Deleting any of these never breaks a pull online: a missing tag or manifest is fetched again, a
 * missing blob is re-fetched transparently (BlobService falls back to a fill). Links (which repository
 * may serve a digest) are left alone: tiny, and a link whose content is gone is just a miss.
 */
export interface ExpiryOptions {
  storage: Storage;
  /** Epoch ms: what was last used before this expires. */
  cutoff: number;
  guard: DeleteGuard;
  /** Latest access over every replica (undefined: never recorded). */
  lastAccess: (digest: string) => number | undefined;
  /** Also delete unreachable, unused manifests (prune). */
  manifests: boolean;
  dryRun?: boolean | undefined;
  /** Listings already made by the caller (else listed here). */
  blobs?: BlobListing[] | undefined;
  manifestList?: ManifestListing[] | undefined;
  /** Called for each thing deleted (or, with dryRun, that would be). */
  onItem?: ((item: ExpiredItem) => void) | undefined;
}

export type ExpiredItem =
  | {
      kind: 'tag';
      namespace: string;
      repository: string;
      tag: string;
      digest: string;
      lastUse: number;
      reason: 'unused' | 'manifest missing';
    }
  | { kind: 'manifest'; digest: string; size: number; lastUse: number }
  | { kind: 'blob'; digest: string; size: number; lastUse: number };

export interface ExpiryReport {
  tags: number;
  manifests: number;
  manifestBytes: number;
  blobs: number;
  blobBytes: number;
  /** Digests of the blobs deleted (or that would be). */
  deletedBlobs: Set<string>;
  deletedManifests: Set<string>;
}

export async function expire(options: ExpiryOptions): Promise<ExpiryReport> {
  const { storage, guard, lastAccess } = options;
  const dryRun = options.dryRun ?? false;
  const cutoff = Math.min(options.cutoff, guard.now() - guard.graceMs);
  const report: ExpiryReport = {
    tags: 0,
    manifests: 0,
    manifestBytes: 0,
    blobs: 0,
    blobBytes: 0,
    deletedBlobs: new Set(),
    deletedManifests: new Set(),
  };
  const emit = (item: ExpiredItem) => options.onItem?.(item);
  const used = (base: number, digest: string) => Math.max(base, lastAccess(digest) ?? 0);

  const manifestList = options.manifestList ?? (await collect(storage.listManifests()));
  const manifests = new Map(manifestList.map((m) => [m.digest, m]));

  // Tags.
  const keptDigests = new Set<string>();
  for (const repo of await collect(storage.listRepositories())) {
    for (const tag of await storage.listTags(repo)) {
      const record = await storage.getTag(repo, tag);
      if (!record) continue;
      const lastUse = used(record.checkedAt.getTime(), record.digest);
      let reason: 'unused' | 'manifest missing' | undefined;
      if (lastUse <= guard.now() - guard.graceMs) {
        if (!manifests.has(record.digest) && !(await storage.getManifest(record.digest))) reason = 'manifest missing';
        else if (lastUse < cutoff) reason = 'unused';
      }
      if (!reason) {
        keptDigests.add(record.digest);
        continue;
      }
      if (!dryRun) await storage.deleteTag(repo, tag);
      report.tags++;
      emit({ kind: 'tag', ...repoFields(repo), tag, digest: record.digest, lastUse, reason });
    }
  }

  // Manifests (prune only).
  if (options.manifests) {
    const reachable = await reachableManifests(storage, keptDigests);
    for (const m of manifestList) {
      if (reachable.has(m.digest)) continue;
      const lastUse = used(m.fetchedAt.getTime(), m.digest);
      if (lastUse >= cutoff) continue;
      if (!dryRun) await storage.deleteManifest(m.digest);
      report.manifests++;
      report.manifestBytes += m.size;
      report.deletedManifests.add(m.digest);
      emit({ kind: 'manifest', digest: m.digest, size: m.size, lastUse });
    }
  }

  // Blobs.
  const blobs = options.blobs ?? (await collect(storage.listBlobs()));
  for (const b of blobs) {
    const lastUse = used(b.modified.getTime(), b.digest);
    if (lastUse >= cutoff) continue;
    const outcome = await deleteBlobIfIdle(storage, b.digest, guard, dryRun);
    if (outcome === 'kept') continue;
    report.deletedBlobs.add(b.digest);
    if (outcome === 'gone') continue;
    report.blobs++;
    report.blobBytes += b.size;
    emit({ kind: 'blob', digest: b.digest, size: b.size, lastUse });
  }
  return report;
}

/** The kept tags' manifests and, through indexes, their children (any depth). */
async function reachableManifests(storage: Storage, roots: Set<string>): Promise<Set<string>> {
  const reached = new Set<string>();
  const queue = [...roots];
  while (queue.length > 0) {
    const digest = queue.pop() as string;
    if (reached.has(digest)) continue;
    reached.add(digest);
    const m = await storage.getManifest(digest);
    if (!m) continue;
    try {
      const refs = manifestRefs(m.mediaType, m.bytes);
      if (refs.kind === 'index') for (const child of refs.children) queue.push(child.digest);
    } catch {
      // Not a manifest we can read: nothing reached through it.
    }
  }
  return reached;
}

function repoFields(repo: RepositoryRef): { namespace: string; repository: string } {
  return { namespace: repo.namespace, repository: repo.repository };
}

export async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const all: T[] = [];
  for await (const item of items) all.push(item);
  return all;
}
