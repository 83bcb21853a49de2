import type { Logger } from 'pino';
import { OciError, isOciError } from '../oci/errors.js';
import type { ResolvedRepository } from '../resolve/resolver.js';
import type { Storage } from '../storage/storage.js';
import type { UpstreamPool } from '../upstream/upstream-pool.js';
import { STALE_WARNING } from './blob-handle.js';
import type { CacheOutcome } from './events.js';
import { repoRef } from './manifest-service.js';
import { errorText } from '../error-text.js';

export interface TagPageResult {
  tags: string[];
  more: boolean;
  outcome: CacheOutcome;
  warning: string | undefined;
}

/** Tag lists come from upstream; during an outage, from the tags this cache has seen. */
export class TagService {
  constructor(
    private readonly storage: Storage,
    private readonly upstreams: UpstreamPool,
    private readonly log: Logger,
    /** Never contact upstreams: list the tags this cache holds. */
    private readonly offline = false,
    /** Waits for tag records still being written behind responses, so a list sees every pull before it. */
    private readonly written: () => Promise<void> = async () => undefined,
  ) {}

  async list(repo: ResolvedRepository, n: number | undefined, last: string | undefined): Promise<TagPageResult> {
    if (this.offline) return this.cached(repo, n, last);
    try {
      const page = await this.upstreams.client(repo.upstream).getTags(repo.repository, n, last);
      // Lexical order and the page bounds are ours to guarantee, whatever upstream did.
      const sorted = [...new Set(page.tags)].sort(compareTags).filter((t) => last === undefined || compareTags(t, last) > 0);
      const tags = n === undefined ? sorted : sorted.slice(0, n);
      return { tags, more: page.more || (n !== undefined && sorted.length > n), outcome: 'miss', warning: undefined };
    } catch (e) {
      if (!(isOciError(e) && e.isUpstreamOutage && repo.upstream.serveStale)) throw e;
      await this.written();
      const known = await this.storage.listTags(repoRef(repo)).catch(() => [] as string[]);
      if (known.length === 0) throw e;
      this.log.warn(
        { namespace: repo.namespace, repository: repo.repository, err: errorText(e) },
        'upstream unavailable; listing cached tags',
      );
      const after = known.sort(compareTags).filter((t) => last === undefined || compareTags(t, last) > 0);
      const tags = n === undefined ? after : after.slice(0, n);
      return { tags, more: tags.length < after.length, outcome: 'stale', warning: STALE_WARNING };
    }
  }

  private async cached(repo: ResolvedRepository, n: number | undefined, last: string | undefined): Promise<TagPageResult> {
    await this.written();
    const known = await this.storage.listTags(repoRef(repo));
    if (known.length === 0) {
      throw new OciError('NAME_UNKNOWN', 'repository unknown to registry (offline: no cached tags)', { detail: { name: repo.repository } });
    }
    const after = known.sort(compareTags).filter((t) => last === undefined || compareTags(t, last) > 0);
    const tags = n === undefined ? after : after.slice(0, n);
    return { tags, more: tags.length < after.length, outcome: 'hit', warning: undefined };
  }
}

/** Lexical (code point) order, as the distribution spec asks. */
function compareTags(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
