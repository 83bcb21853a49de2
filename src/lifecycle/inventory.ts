import type { Storage, StoredManifest } from '../storage/storage.js';
import { readAccessTimes } from './access-state.js';
import { collect } from './expiry.js';
import { manifestRefs } from './manifest-refs.js';

/** What `ls` shows: every cached repository and tag, with what of its image the cache holds. */
export interface Inventory {
  repositories: RepositoryInventory[];
  totals: { repositories: number; tags: number; blobs: number; blobBytes: number; manifests: number; manifestBytes: number };
}

export interface RepositoryInventory {
  namespace: string;
  repository: string;
  tags: TagInventory[];
}

export interface TagInventory {
  tag: string;
  digest: string;
  mediaType: string;
  /** When upstream last confirmed the tag. */
  checkedAt: string;
  /** Latest access (any replica) of the manifest or anything it references; null when none recorded. */
  lastAccess: string | null;
  /** The manifest's own size; null when the manifest is not cached. */
  manifestSize: number | null;
  /** The manifests (an index and its cached children) plus the referenced blobs that are cached. */
  size: number;
  /** Referenced blobs that are cached. */
  blobs: Array<{ digest: string; size: number }>;
  /** Referenced blobs (of cached manifests) that are not cached (evicted or never pulled). */
  missingBlobs: number;
}

export async function takeInventory(storage: Storage, options: { namespace?: string | undefined } = {}): Promise<Inventory> {
  const blobSizes = new Map((await collect(storage.listBlobs())).map((b) => [b.digest, b.size]));
  const manifestList = await collect(storage.listManifests());
  const access = (await readAccessTimes(storage)).times;
  const manifests = new Map<string, StoredManifest | undefined>();
  const readManifest = async (digest: string) => {
    if (!manifests.has(digest)) manifests.set(digest, await storage.getManifest(digest));
    return manifests.get(digest);
  };

  const repos = (await collect(storage.listRepositories()))
    .filter((r) => options.namespace === undefined || r.namespace === options.namespace)
    .sort((a, b) => compare(`${a.namespace}/${a.repository}`, `${b.namespace}/${b.repository}`));
  const repositories: RepositoryInventory[] = [];
  let tagCount = 0;
  for (const repo of repos) {
    const tags: TagInventory[] = [];
    for (const tag of await storage.listTags(repo)) {
      const record = await storage.getTag(repo, tag);
      if (!record) continue;
      const root = await readManifest(record.digest);
      let size = 0;
      let latest = access.get(record.digest);
      const blobs = new Map<string, number>();
      let missing = 0;
      // The manifest, and for an index its cached children, each once.
      const queue = [record.digest];
      const seen = new Set<string>();
      while (queue.length > 0) {
        const digest = queue.shift() as string;
        if (seen.has(digest)) continue;
        seen.add(digest);
        const m = await readManifest(digest);
        if (!m) continue;
        size += m.bytes.length;
        latest = later(latest, access.get(digest));
        let refs;
        try {
          refs = manifestRefs(m.mediaType, m.bytes);
        } catch {
          continue;
        }
        if (refs.kind === 'index') {
          queue.push(...refs.children.map((c) => c.digest));
          continue;
        }
        for (const d of [...(refs.config ? [refs.config] : []), ...refs.layers]) {
          if (blobs.has(d.digest)) continue;
          const cached = blobSizes.get(d.digest);
          if (cached === undefined) {
            missing++;
            continue;
          }
          blobs.set(d.digest, cached);
          size += cached;
          latest = later(latest, access.get(d.digest));
        }
      }
      tags.push({
        tag,
        digest: record.digest,
        mediaType: record.mediaType,
        checkedAt: record.checkedAt.toISOString(),
        lastAccess: latest === undefined ? null : new Date(latest).toISOString(),
        manifestSize: root ? root.bytes.length : null,
        size,
        blobs: [...blobs].map(([digest, s]) => ({ digest, size: s })),
        missingBlobs: missing,
      });
    }
    if (tags.length === 0) continue;
    tagCount += tags.length;
    repositories.push({ namespace: repo.namespace, repository: repo.repository, tags });
  }
  let blobBytes = 0;
  for (const s of blobSizes.values()) blobBytes += s;
  return {
    repositories,
    totals: {
      repositories: repositories.length,
      tags: tagCount,
      blobs: blobSizes.size,
      blobBytes,
      manifests: manifestList.length,
      manifestBytes: manifestList.reduce((sum, m) => sum + m.size, 0),
    },
  };
}

function later(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Math.max(a, b);
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
