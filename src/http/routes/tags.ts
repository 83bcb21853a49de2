import type { FastifyReply, FastifyRequest } from 'fastify';
import { OciError } from '../../oci/errors.js';
import { isValidTag } from '../../oci/names.js';
import type { Mirror } from '../../proxy/mirror.js';
import type { ResolvedRepository } from '../../resolve/resolver.js';
import { parsePageQuery, queryParam, setNextLink } from '../pagination.js';

export async function serveTags(
  mirror: Mirror,
  repo: ResolvedRepository,
  clientName: string,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const { n, last } = parsePageQuery(request);
  if (last !== undefined && !isValidTag(last))
    throw new OciError('TAG_INVALID', 'last is not a valid tag', { detail: { last: last.slice(0, 200) } });

  const page = n === 0 ? { tags: [], more: false, outcome: 'miss' as const, warning: undefined } : await mirror.tags.list(repo, n, last);
  request.ctx.outcome = page.outcome;
  if (page.warning) reply.header('warning', page.warning);
  const lastTag = page.tags[page.tags.length - 1];
  if (page.more && lastTag !== undefined) {
    const ns = queryParam(request, 'ns');
    setNextLink(reply, `/v2/${clientName}/tags/list`, n, lastTag, ns === undefined ? {} : { ns });
  }
  const body = JSON.stringify({ name: clientName, tags: page.tags });
  reply.header('content-type', 'application/json');
  return reply.send(body);
}
