import type { RepositoryRef, Storage, StoredManifest } from '../../storage/storage.js';
import { readAccessTimes } from './access-state.js';
import { collect } from './expiry.js';
import { manifestRefs } from '../manifest-refs.js';

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

/**
 * The cache-wide facts every tag's entry is computed from: cached blob sizes, the manifest listing and
 * the last access of every digest (all replicas). One listing of everything: `ls` takes one per run, the
 * status page keeps one for a while.
 */
export interface CacheScan {
  blobSizes: ReadonlyMap<string, number>;
  manifests: ReadonlyArray<{ digest: string; size: number }>;
  /** Latest access of a digest (ms since the epoch). */
  access: { get(digest: string): number | undefined };
}

export async function scanCache(storage: Storage): Promise<CacheScan> {
  const blobSizes = new Map((await collect(storage.listBlobs())).map((b) => [b.digest, b.size]));
  const manifests = (await collect(storage.listManifests())).map((m) => ({ digest: m.digest, size: m.size }));
  const access = (await readAccessTimes(storage)).times;
  return { blobSizes, manifests, access };
}

/** Reads each manifest once (an index's children are shared by its tags). */
export type ManifestReader = (digest: string) => Promise<StoredManifest | undefined>;

export function manifestReader(storage: Storage): ManifestReader {
  const manifests = new Map<string, Promise<StoredManifest | undefined>>();
  return (digest) => {
    let m = manifests.get(digest);
    if (!m) {
      m = storage.getManifest(digest);
      manifests.set(digest, m);
    }
    return m;
  };
}

/** One tag's entry: what the cache holds of its image. Undefined when the tag record is gone. */
export async function inventoryTag(
  storage: Storage,
  scan: CacheScan,
  readManifest: ManifestReader,
  repo: RepositoryRef,
  tag: string,
): Promise<TagInventory | undefined> {
  const { blobSizes, access } = scan;
  const record = await storage.getTag(repo, tag);
  if (!record) return undefined;
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
  return {
    tag,
    digest: record.digest,
    mediaType: record.mediaType,
    checkedAt: record.checkedAt.toISOString(),
    lastAccess: latest === undefined ? null : new Date(latest).toISOString(),
    manifestSize: root ? root.bytes.length : null,
    size,
    blobs: [...blobs].map(([digest, s]) => ({ digest, size: s })),
    missingBlobs: missing,
  };
}

/** `namespace/repository`: the order `ls` and the status page list repositories in. */
export function repositoryKey(repo: RepositoryRef): string {
  return `${repo.namespace}/${repo.repository}`;
}

export async function takeInventory(storage: Storage, options: { namespace?: string | undefined } = {}): Promise<Inventory> {
  const scan = await scanCache(storage);
  const readManifest = manifestReader(storage);
  const repos = (await collect(storage.listRepositories()))
    .filter((r) => options.namespace === undefined || r.namespace === options.namespace)
    .sort((a, b) => compare(repositoryKey(a), repositoryKey(b)));
  const repositories: RepositoryInventory[] = [];
  let tagCount = 0;
  for (const repo of repos) {
    const tags: TagInventory[] = [];
    for (const tag of await storage.listTags(repo)) {
      const entry = await inventoryTag(storage, scan, readManifest, repo, tag);
      if (entry) tags.push(entry);
    }
    if (tags.length === 0) continue;
    tagCount += tags.length;
    repositories.push({ namespace: repo.namespace, repository: repo.repository, tags });
  }
  return { repositories, totals: { repositories: repositories.length, tags: tagCount, ...scanTotals(scan) } };
}

/** Blob and manifest counts and bytes of a scan. */
export function scanTotals(scan: CacheScan): { blobs: number; blobBytes: number; manifests: number; manifestBytes: number } {
  let blobBytes = 0;
  for (const s of scan.blobSizes.values()) blobBytes += s;
  return {
    blobs: scan.blobSizes.size,
    blobBytes,
    manifests: scan.manifests.length,
    manifestBytes: scan.manifests.reduce((sum, m) => sum + m.size, 0),
  };
}

function later(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Math.max(a, b);
}

export function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
