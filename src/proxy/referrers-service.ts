import type { ResolvedRepository } from '../resolve/resolver.js';
import { OCI_INDEX } from '../oci/media-types.js';
import type { UpstreamPool } from '../upstream/upstream-pool.js';

export interface ReferrersResult {
  bytes: Buffer;
  filtersApplied: string | undefined;
}

/**
 * Referrers come from upstream when it implements the API; otherwise the answer is an empty index
 * (never a 404: clients read a 404 as "this registry has no referrers API" and fall back to tag schemes).
 */
export class ReferrersService {
  constructor(
    private readonly upstreams: UpstreamPool,
    /** Never contact upstreams: referrers are not cached, so the answer is the empty index. */
    private readonly offline = false,
  ) {}

  async list(repo: ResolvedRepository, digest: string, artifactType: string | undefined): Promise<ReferrersResult> {
    const reply = this.offline ? undefined : await this.upstreams.client(repo.upstream).getReferrers(repo.repository, digest, artifactType);
    if (reply) return reply;
    const empty = { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] };
    return { bytes: Buffer.from(JSON.stringify(empty)), filtersApplied: undefined };
  }
}
