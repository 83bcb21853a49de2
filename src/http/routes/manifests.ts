import type { FastifyReply, FastifyRequest } from 'fastify';
import { OciError } from '../../oci/errors.js';
import { isAcceptable } from '../../oci/media-types.js';
import { parseReference } from '../../oci/names.js';
import type { Mirror } from '../../proxy/mirror.js';
import type { ResolvedRepository } from '../../resolve/resolver.js';
import { requestOrigin } from '../request-origin.js';

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
  const accept = request.headers.accept;
  // Never convert: a stored type the client did not ask for is "unknown" to it, as in distribution.
  if (!isAcceptable(result.mediaType, accept === undefined ? [] : [accept])) {
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
