import type { FastifyReply, FastifyRequest } from 'fastify';
import { OciError } from '../../oci/errors.js';
import { isAcceptable } from '../../oci/media-types.js';
import { parseReference } from '../../oci/names.js';
import type { Mirror } from '../../proxy/mirror.js';
import type { ResolvedRepository } from '../../resolve/resolver.js';
import { requestOrigin } from '../request-origin.js';

/** Verdicts per Accept header and media type: clients send a handful of distinct Accept values. */
const verdicts = new Map<string, Map<string, boolean>>();
const MAX_VERDICT_HEADERS = 256;
const MAX_VERDICT_TYPES = 32;
/** Longer Accept values (client-chosen, up to the header limit) are judged each time, never kept. */
const MAX_KEPT_ACCEPT_LENGTH = 1024;

function acceptable(mediaType: string, accept: string | undefined): boolean {
  if (accept === undefined) return true;
  if (accept.length > MAX_KEPT_ACCEPT_LENGTH) return isAcceptable(mediaType, [accept]);
  let byType = verdicts.get(accept);
  if (byType === undefined) {
    if (verdicts.size >= MAX_VERDICT_HEADERS) verdicts.clear();
    byType = new Map();
    verdicts.set(accept, byType);
  }
  let verdict = byType.get(mediaType);
  if (verdict === undefined) {
    verdict = isAcceptable(mediaType, [accept]);
    if (byType.size >= MAX_VERDICT_TYPES) byType.clear();
    byType.set(mediaType, verdict);
  }
  return verdict;
}

export async function serveManifest(
  mirror: Mirror,
  repo: ResolvedRepository,
  rawReference: string,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const reference = parseReference(rawReference);
  const result = await mirror.manifests.get(repo, reference, requestOrigin(request));
  request.ctx.outcome = result.outcome;
  if (result.linked) request.ctx.linked = true;
  // Never convert: a stored type the client did not ask for is "unknown" to it, as in distribution.
  if (!acceptable(result.mediaType, request.headers.accept)) {
    throw new OciError('MANIFEST_UNKNOWN', 'manifest not available in an accepted media type', {
      detail: { mediaType: result.mediaType },
    });
  }
  reply
    .header('content-type', result.mediaType)
    .header('docker-content-digest', result.digest)
    .header('etag', `"${result.digest}"`)
    .header('content-length', result.bytes.length);
  if (result.warning) reply.header('warning', result.warning);
  if (request.method === 'HEAD') return reply.send();
  request.ctx.bytes = result.bytes.length;
  return reply.send(result.bytes);
}
