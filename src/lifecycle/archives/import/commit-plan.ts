import type { Storage } from '../../../storage/storage.js';
import type { ImportLedger } from './import-ledger.js';
import type { Plan } from './plan.js';

/**
 * Stores a checked plan: the blobs still to write, then the manifests (children first), then, past the
 * point of no return, each image's repository links and its tags, so every tag points to a stored
 * manifest. Returns the blobs the imported images use.
 */
export async function commitPlan(plan: Plan, storage: Storage, ledger: ImportLedger, now: Date): Promise<Set<string>> {
  for (const [digest, bytes] of plan.blobWrites) {
    if (ledger.added.has(digest) || ledger.reused.has(digest)) continue;
    if (await storage.statBlob(digest)) ledger.markReused(digest);
    else await ledger.writeBlob(digest, bytes);
  }
  const referenced = new Set(plan.images.flatMap((img) => [...img.blobs.keys()]));
  // Blobs stored while reading that no imported manifest uses (legacy duplicates, large manifests read back).
  for (const digest of [...ledger.added]) {
    if (referenced.has(digest)) continue;
    await storage.deleteBlob(digest).catch(() => undefined);
    ledger.added.delete(digest);
  }
  // Blobs already cached count as fresh now: an offline mirror serves them without asking upstream.
  for (const digest of referenced) {
    if (ledger.reused.has(digest)) await storage.touchBlob(digest).catch(() => undefined);
  }
  for (const [digest, m] of plan.manifests) {
    if (await storage.getManifest(digest)) continue;
    await storage.putManifest(digest, { mediaType: m.mediaType, bytes: m.bytes, fetchedAt: now });
    ledger.addedManifests.add(digest);
  }
  // Tags last: from here on nothing is rolled back, every tag points to a stored manifest.
  ledger.settle();
  // The operator says which repository each image belongs to: link its manifests and blobs there, so
  // the mirror serves them through that repository (offline too), and through no other without a
  // HEAD to that one's upstream.
  for (const image of plan.images) {
    const repos = new Map(image.names.map((n) => [`${n.namespace}/${n.repository}`, { namespace: n.namespace, repository: n.repository }]));
    for (const repo of repos.values()) {
      for (const digest of image.manifests) await storage.putLink(repo, 'manifest', digest, now);
      for (const digest of image.blobs.keys()) await storage.putLink(repo, 'blob', digest, now);
    }
  }
  for (const image of plan.images) {
    for (const name of image.names) {
      if (name.tag === undefined) continue;
      await storage.putTag({ namespace: name.namespace, repository: name.repository }, name.tag, {
        digest: image.digest,
        mediaType: image.mediaType,
        size: image.size,
        checkedAt: now,
      });
    }
  }
  return referenced;
}
