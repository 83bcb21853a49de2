import type { Logger } from 'pino';
import { OciError, isOciError } from '../oci/errors.js';
import type { Reference } from '../oci/names.js';
import type { ResolvedRepository } from '../resolve/resolver.js';
import type { RepositoryRef, Storage, StoredManifest, TagRecord } from '../storage/storage.js';
import { statusError } from '../upstream/errors.js';
import { upstreamKey, type UpstreamPool } from '../upstream/upstream-pool.js';
import { STALE_WARNING } from './blob-handle.js';
import { Coalescer } from './coalescer.js';
import { Lru } from './lru.js';
import type { AccessRecorder, CacheOutcome, ProxyObserver } from './events.js';
import type { RepositoryLinks } from './links.js';
import { errorText } from '../error-text.js';
import { clusterKeys } from '../cluster/rendezvous.js';
import { keepsPeerCopies, ownerAnswer, ownerToAsk, type PeerRouting, type RequestOrigin } from './peer-routing.js';

export interface ManifestResult {
  digest: string;
  mediaType: string;
  bytes: Buffer;
  outcome: CacheOutcome;
  warning: string | undefined;
  /** The upstream confirmed the digest for this repository on this request, which linked it (for the log). */
  linked?: boolean;
}

export interface ManifestServiceOptions {
  storage: Storage;
  upstreams: UpstreamPool;
  log: Logger;
  observer?: ProxyObserver | undefined;
  /** Never contact upstreams: serve what the cache holds, whatever its age; MANIFEST_UNKNOWN for the rest. */
  offline?: boolean | undefined;
  /** Told of every manifest served (the cache lifecycle's access times). */
  access?: AccessRecorder | undefined;
  /** Which repository may serve which digest (shared with the blob service). */
  links: RepositoryLinks;
  /** With --peers: cold manifests and tags come from their owner replica. */
  peers?: PeerRouting | undefined;
  now?: () => number;
}

/**
 * Manifest cache policy. By digest: immutable, fetched once. By tag: the tag -> digest mapping is
 * trusted for manifest_invalidation_time, then re-checked with a HEAD (free against Docker Hub's pull
 * limit); when upstream fails, the last known mapping is served stale.
 *
 * By digest, a stored manifest is served through a repository only when linked to it (RepositoryLinks):
 * fetched through it, reached through one of its tags, or confirmed by a HEAD to its upstream. A 404
 * there is the very error a manifest this cache never saw gets. A tag record is per repository, so a
 * pull by tag needs no link; fetching or re-validating the tag links its manifest.
 */
export class ManifestService {
  private readonly fetches = new Coalescer<ManifestResult>();
  /** Storage writes running behind responses. */
  private readonly writes = new Set<Promise<void>>();
  // Hot entries in memory: a warm manifest request then costs no storage I/O. Manifests by digest are
  // immutable; tag records carry their own checkedAt, so a cached copy is exactly as fresh as the stored one.
  private readonly hotManifests = new Lru<StoredManifest>(64 * 1024 * 1024, (m) => m.bytes.length + 256);
  private readonly hotTags = new Lru<TagRecord>(20_000);
  private readonly now: () => number;

  constructor(private readonly options: ManifestServiceOptions) {
    this.now = options.now ?? Date.now;
  }

  get(repo: ResolvedRepository, reference: Reference, origin?: RequestOrigin): Promise<ManifestResult> {
    // A warm request is answered from memory without a chain of awaits (each one a promise and a turn).
    const hot = reference.kind === 'digest' ? this.hotByDigest(repo, reference.digest.value) : this.hotByTag(repo, reference.tag);
    if (hot !== undefined) {
      this.options.access?.record(hot.digest);
      return Promise.resolve(hot);
    }
    return this.getFromStorageOrUpstream(repo, reference, origin);
  }

  private async getFromStorageOrUpstream(
    repo: ResolvedRepository,
    reference: Reference,
    origin: RequestOrigin | undefined,
  ): Promise<ManifestResult> {
    const result =
      reference.kind === 'digest'
        ? await this.byDigest(repo, reference.digest.value, origin)
        : await this.byTag(repo, reference.tag, origin);
    // Served from the cache: its last access (a fetch's time is the tag's checkedAt, the manifest's fetchedAt).
    if (result.outcome !== 'miss') this.options.access?.record(result.digest);
    return result;
  }

  /** byDigest's answer when memory holds the link and the manifest; else undefined (no I/O). */
  private hotByDigest(repo: ResolvedRepository, digest: string): ManifestResult | undefined {
    if (this.options.links.peek(repoRef(repo), 'manifest', digest) === undefined) return undefined;
    const stored = this.hotManifests.get(digest);
    return stored && { digest, mediaType: stored.mediaType, bytes: stored.bytes, outcome: 'hit', warning: undefined };
  }

  /** byTag's answer when memory holds a fresh tag record and its manifest; else undefined (no I/O). */
  private hotByTag(repo: ResolvedRepository, tag: string): ManifestResult | undefined {
    const record = this.hotTags.get(tagKey(repoRef(repo), tag));
    if (!record || !(this.options.offline || this.now() - record.checkedAt.getTime() < repo.upstream.manifestInvalidationMs))
      return undefined;
    const stored = this.hotManifests.get(record.digest);
    return stored && { digest: record.digest, mediaType: stored.mediaType, bytes: stored.bytes, outcome: 'hit', warning: undefined };
  }

  private async byDigest(repo: ResolvedRepository, digest: string, origin: RequestOrigin | undefined): Promise<ManifestResult> {
    const ref = repoRef(repo);
    const links = this.options.links;
    const linked = links.peek(ref, 'manifest', digest) ?? (await links.get(ref, 'manifest', digest));
    if (linked !== undefined) {
      const stored = await this.readManifest(digest);
      if (stored) return { digest, mediaType: stored.mediaType, bytes: stored.bytes, outcome: 'hit', warning: undefined };
    }
    if (this.options.offline) throw manifestUnknown(digest);
    // Per upstream and repository: a request never waits on (or fails with) another upstream's fetch of the
    // same digest, and a fetch or a HEAD through one repository proves nothing for another.
    const key = `d\0${upstreamKey(repo.upstream)}\0${repo.repository}\0${digest}`;
    return this.fetches.run(key, async () => {
      // A fetch through this repository that ended while this request read storage: no second fetch.
      const landed = this.hotByDigest(repo, digest);
      if (landed) return { ...landed, outcome: 'coalesced' };
      const owner = ownerToAsk(this.options.peers, clusterKeys.digest(digest), origin);
      const fromOwner = owner === undefined ? undefined : await this.fromOwner(repo, digest, owner, origin);
      return fromOwner ?? (linked === undefined ? this.confirmDigest(repo, digest) : this.fetch(repo, digest));
    });
  }

  /** An unlinked digest: when stored, a HEAD to this repository's upstream decides; else the fetch does. */
  private async confirmDigest(repo: ResolvedRepository, digest: string): Promise<ManifestResult> {
    const stored = await this.readManifest(digest);
    if (!stored) return this.fetch(repo, digest);
    const head = await this.options.upstreams.client(repo.upstream).headManifest(repo.repository, digest);
    // By digest the answer names that digest; another one means the upstream does not hold this one here.
    if (head.digest !== undefined && head.digest !== digest) throw statusError(repo.namespace, 404, 'MANIFEST_UNKNOWN');
    this.options.links.record(repoRef(repo), 'manifest', digest);
    return { digest, mediaType: stored.mediaType, bytes: stored.bytes, outcome: 'hit', warning: undefined, linked: true };
  }

  private async byTag(repo: ResolvedRepository, tag: string, origin: RequestOrigin | undefined): Promise<ManifestResult> {
    const ref = repoRef(repo);
    const record = await this.readTag(ref, tag);
    if (record && (this.options.offline || this.now() - record.checkedAt.getTime() < repo.upstream.manifestInvalidationMs)) {
      const stored = await this.readManifest(record.digest);
      if (stored) return { digest: record.digest, mediaType: stored.mediaType, bytes: stored.bytes, outcome: 'hit', warning: undefined };
    }
    if (this.options.offline) throw manifestUnknown(tag);
    const key = `t\0${repo.namespace}\0${repo.repository}\0${tag}`;
    return this.fetches.run(key, async () => {
      // A fetch that ended while this request read storage left its answer in memory: no second fetch.
      const landed = this.hotByTag(repo, tag);
      if (landed) return { ...landed, outcome: 'coalesced' };
      // A missing or expired tag record is the owner's to fetch or re-check: one upstream request per cluster.
      const owner = ownerToAsk(this.options.peers, clusterKeys.tag(repo.namespace, repo.repository, tag), origin);
      const fromOwner = owner === undefined ? undefined : await this.fromOwner(repo, tag, owner, origin);
      return fromOwner ?? this.revalidateTag(repo, tag, record);
    });
  }

  /**
   * Asks the owner replica (concurrent requests share this through the coalescer). The peer client checked
   * the bytes against their digest (and, by digest, against the reference). With shared storage the owner
   * stores them and this replica keeps nothing; with its own root it keeps a copy only with
   * --peer-cache-copies. Undefined when the owner could not answer: the caller serves as if alone.
   */
  private async fromOwner(
    repo: ResolvedRepository,
    reference: string,
    peer: string,
    origin: RequestOrigin | undefined,
  ): Promise<ManifestResult | undefined> {
    const peers = this.options.peers;
    if (!peers) return undefined;
    const answer = await peers.cluster.client.fetchManifest({
      peer,
      namespace: repo.namespace,
      repository: repo.repository,
      reference,
      authorization: origin?.authorization,
    });
    if (!answer.ok) {
      const forClient = ownerAnswer(answer, repo.namespace);
      if (forClient) throw forClient;
      this.options.log.warn(
        { peer, namespace: repo.namespace, repository: repo.repository, reference, code: answer.code, err: answer.message },
        'owner replica failed; fetching the manifest here',
      );
      return undefined;
    }
    if (keepsPeerCopies(peers)) this.keep(repo, reference, answer);
    return { digest: answer.digest, mediaType: answer.mediaType, bytes: answer.bytes, outcome: 'peer', warning: undefined };
  }

  /**
   * Keeps a manifest fetched through this repository (from its upstream, or from the owner replica with
   * --peer-cache-copies; either proved the repository holds it) and, for a tag, the mapping.
   */
  private keep(repo: ResolvedRepository, reference: string, m: { digest: string; mediaType: string; bytes: Buffer }): void {
    const now = new Date(this.now());
    const manifest: StoredManifest = { mediaType: m.mediaType, bytes: m.bytes, fetchedAt: now };
    const record = reference.includes(':') ? undefined : { digest: m.digest, mediaType: m.mediaType, size: m.bytes.length, checkedAt: now };
    // Both in memory now; in storage the manifest before its tag, so a stored tag never points at a manifest
    // that was never written.
    this.hotManifests.set(m.digest, manifest);
    if (record) this.hotTags.set(tagKey(repoRef(repo), reference), record);
    this.options.links.record(repoRef(repo), 'manifest', m.digest);
    this.writeBehind(async () => {
      await this.storeManifest(m.digest, manifest);
      if (record) await this.storeTag(repo, reference, record);
    });
  }

  private async revalidateTag(repo: ResolvedRepository, tag: string, record: TagRecord | undefined): Promise<ManifestResult> {
    const client = this.options.upstreams.client(repo.upstream);
    try {
      if (record) {
        const head = await client.headManifest(repo.repository, tag);
        if (head.digest === record.digest) {
          const stored = await this.readManifest(record.digest);
          if (stored) {
            const checked = { ...record, checkedAt: new Date(this.now()) };
            this.hotTags.set(tagKey(repoRef(repo), tag), checked);
            this.options.links.ensure(repoRef(repo), 'manifest', record.digest);
            this.writeBehind(() => this.storeTag(repo, tag, checked));
            return { digest: record.digest, mediaType: stored.mediaType, bytes: stored.bytes, outcome: 'revalidated', warning: undefined };
          }
        }
      }
      return await this.fetch(repo, tag);
    } catch (e) {
      if (record && isOciError(e) && e.isUpstreamOutage && repo.upstream.serveStale) {
        const stored = await this.readManifest(record.digest);
        if (stored) {
          this.options.log.warn(
            { namespace: repo.namespace, repository: repo.repository, tag, digest: record.digest, err: errorText(e) },
            'upstream unavailable; serving the last known tag mapping',
          );
          return { digest: record.digest, mediaType: stored.mediaType, bytes: stored.bytes, outcome: 'stale', warning: STALE_WARNING };
        }
      }
      throw e;
    }
  }

  /** GET from upstream, verify (by the client), store the bytes and, for a tag, the mapping. */
  private async fetch(repo: ResolvedRepository, reference: string): Promise<ManifestResult> {
    const client = this.options.upstreams.client(repo.upstream);
    const m = await client.getManifest(repo.repository, reference);
    this.keep(repo, reference, m);
    return { digest: m.digest, mediaType: m.mediaType, bytes: m.bytes, outcome: 'miss', warning: undefined };
  }

  // Storage failures never fail a pull that upstream can serve: log, count, carry on uncached.

  private async readManifest(digest: string): Promise<StoredManifest | undefined> {
    const hot = this.hotManifests.get(digest);
    if (hot) return hot;
    try {
      const stored = await this.options.storage.getManifest(digest);
      if (stored) this.hotManifests.set(digest, stored);
      return stored;
    } catch (e) {
      this.storageFailed('get_manifest', e);
      return undefined;
    }
  }

  private async readTag(ref: RepositoryRef, tag: string): Promise<TagRecord | undefined> {
    const key = tagKey(ref, tag);
    const hot = this.hotTags.get(key);
    if (hot) return hot;
    try {
      const stored = await this.options.storage.getTag(ref, tag);
      if (stored) this.hotTags.set(key, stored);
      return stored;
    } catch (e) {
      this.storageFailed('get_tag', e);
      return undefined;
    }
  }

  /** Waits for the storage writes still running behind responses (graceful shutdown, tests). */
  async drain(): Promise<void> {
    while (this.writes.size > 0) await Promise.all(this.writes);
  }

  /**
   * Stores behind the response: the hot entries are set at once, so requests are answered from memory
   * while the synced writes (two fdatasyncs on a filesystem) run; a cold pull does not wait for them.
   */
  private writeBehind(work: () => Promise<void>): void {
    const write: Promise<void> = work().finally(() => this.writes.delete(write));
    this.writes.add(write);
  }

  private async storeManifest(digest: string, manifest: StoredManifest): Promise<void> {
    try {
      await this.options.storage.putManifest(digest, manifest);
    } catch (e) {
      this.storageFailed('put_manifest', e);
    }
  }

  private async storeTag(repo: ResolvedRepository, tag: string, record: TagRecord): Promise<void> {
    try {
      await this.options.storage.putTag(repoRef(repo), tag, record);
    } catch (e) {
      this.storageFailed('put_tag', e);
    }
  }

  private storageFailed(operation: string, e: unknown): void {
    this.options.observer?.storageError?.(operation);
    this.options.log.warn({ operation, err: errorText(e) }, 'storage operation failed');
  }
}

function manifestUnknown(reference: string): OciError {
  return new OciError('MANIFEST_UNKNOWN', 'manifest unknown to registry (offline: not cached)', { detail: { reference } });
}

function tagKey(ref: RepositoryRef, tag: string): string {
  return `${ref.namespace}\0${ref.repository}\0${tag}`;
}

export function repoRef(repo: ResolvedRepository): RepositoryRef {
  return { namespace: repo.namespace, repository: repo.repository };
}
