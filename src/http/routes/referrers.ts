import type { FastifyReply, FastifyRequest } from 'fastify';
import { parseDigest } from '../../oci/digest.js';
import { OCI_INDEX } from '../../oci/media-types.js';
import type { Mirror } from '../../proxy/mirror.js';
import type { ResolvedRepository } from '../../resolve/resolver.js';

export async function serveReferrers(
  mirror: Mirror,
  repo: ResolvedRepository,
  rawDigest: string,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const digest = parseDigest(rawDigest).value;
  const query = request.query as Record<string, string | string[] | undefined>;
  const at = query['artifactType'];
  const artifactType = Array.isArray(at) ? at[0] : at;
  const result = await mirror.referrers.list(repo, digest, artifactType);
  if (result.filtersApplied) reply.header('oci-filters-applied', result.filtersApplied);
  return reply.header('content-type', OCI_INDEX).send(result.bytes);
}
