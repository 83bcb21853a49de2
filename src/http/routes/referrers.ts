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
  const digest = parseDigest(rawDigest);
  const query = request.query as Record<string, string | string[] | undefined>;
  const at = query['artifactType'];
  const artifactType = Array.isArray(at) ? at[0] : at;
  const result = await mirror.referrers.list(repo, digest, artifactType);
  request.ctx.outcome = result.outcome;
  if (result.filtersApplied) reply.header('oci-filters-applied', result.filtersApplied);
  if (result.warning) reply.header('warning', result.warning);
  reply.header('content-type', OCI_INDEX).header('content-length', result.bytes.length);
  if (request.method === 'HEAD') return reply.send();
  return reply.send(result.bytes);
}
