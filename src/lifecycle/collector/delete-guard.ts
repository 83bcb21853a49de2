import type { Storage } from '../../storage/storage.js';

/**
 * What keeps a blob from being deleted by the collector or by prune, checked right before each delete:
 * it is being downloaded or read by this process (inUse), or it was used within the grace window:
 * written or re-validated (the blob's modified time, re-read from storage, so another replica's fresh
 * fill counts), or served (this process's own latest record, flushed or not; other replicas' records
 * reach the caller through their access objects).
 */
export interface DeleteGuard {
  now: () => number;
  graceMs: number;
  inUse?: ((digest: string) => boolean) | undefined;
  /** This process's latest access, including what is not flushed yet. */
  recentAccess?: ((digest: string) => number | undefined) | undefined;
}

export type GuardedDelete = 'deleted' | 'gone' | 'kept';

/**
 * Deletes a blob unless the guard protects it. `gone` when it was not there any more (deleted by
 * another replica or a prune); with dryRun, `deleted` means "would be deleted".
 */
export async function deleteBlobIfIdle(storage: Storage, digest: string, guard: DeleteGuard, dryRun = false): Promise<GuardedDelete> {
  if (guard.inUse?.(digest)) return 'kept';
  const stat = await storage.statBlob(digest);
  if (!stat) return 'gone';
  const since = guard.now() - guard.graceMs;
  if (stat.modified.getTime() > since) return 'kept';
  const recent = guard.recentAccess?.(digest);
  if (recent !== undefined && recent > since) return 'kept';
  // Checked again last: a request may have started while the stat ran.
  if (guard.inUse?.(digest)) return 'kept';
  if (!dryRun) await storage.deleteBlob(digest);
  return 'deleted';
}
