import type { Logger } from 'pino';
import type { Digest } from '../oci/digest.js';
import { OciError, isOciError } from '../oci/errors.js';
import { baseMediaType, OCI_INDEX } from '../oci/media-types.js';
import { filterByArtifactType, parseIndexManifests, referrersIndex, referrersTag, type ReferrerDescriptor } from '../oci/referrers.js';
import type { ResolvedRepository } from '../resolve/resolver.js';
import type { UpstreamPool } from '../upstream/upstream-pool.js';
import { STALE_WARNING } from './blob-handle.js';
import type { CacheOutcome } from './events.js';
import { Lru } from './lru.js';
import type { ManifestResult, ManifestService } from './manifest-service.js';
import { errorText } from '../error-text.js';

export interface ReferrersResult {
  /** Always an OCI image index (schemaVersion 2, its mediaType in the body). */
  bytes: Buffer;
  /** `artifactType` when the answer was filtered (the OCI-Filters-Applied header). */
  filtersApplied: string | undefined;
  outcome: CacheOutcome | undefined;
  warning: string | undefined;
}

export interface ReferrersServiceOptions {
  upstreams: UpstreamPool;
  /** The referrers tag schema's index is a tag like any other: cached, revalidated and served stale by it. */
  manifests: ManifestService;
  log: Logger;
  /** Never contact upstreams: answer from the cached tag-schema index, or the empty index. */
  offline?: boolean | undefined;
  now?: () => number;
}

/** How long a repository's "no referrers API" is believed before the API is asked again (an upgraded upstream). */
export const NO_API_RECHECK_MS = 5 * 60_000;
/** Memory for the last pass-through answers, kept to answer during upstream outages. */
const ANSWERS_MAX_BYTES = 16 * 1024 * 1024;
/** Repositories whose referrers API support is remembered (names are client input: bounded). */
const CAPABILITY_ENTRIES = 10_000;

interface Answer {
  bytes: Buffer;
  filtersApplied: string | undefined;
}

/**
 * GET /v2/<name>/referrers/<digest>. The upstream's referrers API when it has one, asked on every request
 * (it has no cheap revalidation and a new signature must show at once); its last answers stay in memory to
 * answer during an outage. An upstream without the API (CNCF distribution 2.8, GHCR: 404) is answered from
 * the referrers tag schema: the image index at tag `<alg>-<hex>` of the subject's repository, fetched and
 * cached through the manifest service like any tag, so it follows manifest_invalidation_time, is served
 * stale on outages and offline, and stays pullable as a manifest.
 *
 * Never a 404: a client reads a 404 as "no referrers API" and would look for the tag itself, but a 200 tells
 * it the API exists, so that 200 must list what the tag schema holds.
 */
export class ReferrersService {
  private readonly hasApi = new Lru<{ present: boolean; at: number }>(CAPABILITY_ENTRIES);
  // Weighed with their keys: a key holds the client's artifactType, which may be far longer than the answer.
  private readonly answers = new Lru<Answer & { keyLength: number }>(ANSWERS_MAX_BYTES, (a) => a.bytes.length + 2 * a.keyLength + 256);
  private readonly now: () => number;

  constructor(private readonly options: ReferrersServiceOptions) {
    this.now = options.now ?? Date.now;
  }

  async list(repo: ResolvedRepository, subject: Digest, artifactType: string | undefined): Promise<ReferrersResult> {
    // `?artifactType=` with nothing is no filter.
    const filter = artifactType === '' ? undefined : artifactType;
    if (!this.options.offline) {
      const fromApi = await this.fromApi(repo, subject, filter);
      if (fromApi) return fromApi;
    }
    return this.fromTagSchema(repo, subject, filter);
  }

  /** The upstream's API answer; undefined when the upstream has no API (or, in an outage, may not have one). */
  private async fromApi(repo: ResolvedRepository, subject: Digest, filter: string | undefined): Promise<ReferrersResult | undefined> {
    // Per repository, not per upstream: a 404 for a repository a client made up must not switch a whole
    // namespace over to the tag schema.
    const repoKey = `${repo.namespace}\0${repo.repository}`;
    const known = this.hasApi.get(repoKey);
    if (known && !known.present && this.now() - known.at < NO_API_RECHECK_MS) return undefined;
    const answerKey = `${repoKey}\0${subject.value}\0${filter ?? ''}`;
    try {
      const reply = await this.options.upstreams.client(repo.upstream).getReferrers(repo.repository, subject.value, filter);
      this.hasApi.set(repoKey, { present: reply !== undefined, at: this.now() });
      if (!reply) return undefined;
      // Filtered here too: the spec lets a registry ignore the filter, and one that claims it may not have.
      const answer = build(reply.manifests, filter);
      this.answers.set(answerKey, { ...answer, keyLength: answerKey.length });
      return { ...answer, outcome: 'miss', warning: undefined };
    } catch (e) {
      if (!(isOciError(e) && e.isUpstreamOutage && repo.upstream.serveStale)) throw e;
      const last = this.answers.get(answerKey);
      if (last) {
        this.options.log.warn(
          { namespace: repo.namespace, repository: repo.repository, subject: subject.value, err: errorText(e) },
          'upstream unavailable; serving the last referrers answer',
        );
        return { bytes: last.bytes, filtersApplied: last.filtersApplied, outcome: 'stale', warning: STALE_WARNING };
      }
      // Not known to have the API (e.g. since a restart): a cached tag-schema index may answer.
      if (known?.present) throw e;
      return undefined;
    }
  }

  private async fromTagSchema(repo: ResolvedRepository, subject: Digest, filter: string | undefined): Promise<ReferrersResult> {
    const tag = referrersTag(subject);
    let manifest: ManifestResult;
    try {
      manifest = await this.options.manifests.get(repo, { kind: 'tag', tag });
    } catch (e) {
      // No such tag (upstream 404, or not cached offline): nothing refers to the subject.
      if (isOciError(e) && e.code === 'MANIFEST_UNKNOWN')
        return { ...build([], filter), outcome: this.options.offline ? undefined : 'miss', warning: undefined };
      throw e;
    }
    const result = { outcome: manifest.outcome, warning: manifest.warning };
    // Something else under a digest-shaped tag (an image someone tagged so) lists no referrers.
    if (baseMediaType(manifest.mediaType) !== OCI_INDEX) {
      this.options.log.warn(
        { namespace: repo.namespace, repository: repo.repository, tag, mediaType: manifest.mediaType },
        'the referrers tag holds no image index; answering an empty referrers index',
      );
      return { ...build([], filter), ...result };
    }
    const manifests = parseIndexManifests(manifest.bytes);
    // An index that does not parse cannot be told apart from a broken upstream: a clean 502, not "none".
    if (!manifests) {
      throw new OciError('UPSTREAM_ERROR', 'the referrers tag schema index of this subject is not a valid image index', {
        detail: { namespace: repo.namespace, repository: repo.repository, tag },
      });
    }
    return { ...build(manifests, filter), ...result };
  }
}

function build(manifests: readonly ReferrerDescriptor[], filter: string | undefined): Answer {
  if (filter === undefined) return { bytes: referrersIndex(manifests), filtersApplied: undefined };
  return { bytes: referrersIndex(filterByArtifactType(manifests, filter)), filtersApplied: 'artifactType' };
}
