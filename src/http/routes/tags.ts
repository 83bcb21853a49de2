import type { FastifyReply, FastifyRequest } from 'fastify';
import { OciError } from '../../oci/errors.js';
import { isValidTag } from '../../oci/names.js';
import type { Mirror } from '../../proxy/mirror.js';
import type { ResolvedRepository } from '../../resolve/resolver.js';

/** Tag pages are bounded so that one request cannot ask for an unbounded response. */
const MAX_PAGE = 10_000;

export async function serveTags(
  mirror: Mirror,
  repo: ResolvedRepository,
  clientName: string,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const query = request.query as Record<string, string | string[] | undefined>;
  const nRaw = single(query['n']);
  const last = single(query['last']);
  let n: number | undefined;
  if (nRaw !== undefined) {
    if (!/^\d{1,9}$/.test(nRaw)) throw new OciError('PAGINATION_NUMBER_INVALID', 'n must be a non-negative integer', { detail: { n: nRaw.slice(0, 50) } });
    n = Math.min(Number(nRaw), MAX_PAGE);
  }
  if (last !== undefined && !isValidTag(last)) throw new OciError('TAG_INVALID', 'last is not a valid tag', { detail: { last: last.slice(0, 200) } });

  const page = n === 0 ? { tags: [], more: false, outcome: 'miss' as const, warning: undefined } : await mirror.tags.list(repo, n, last);
  request.ctx.outcome = page.outcome;
  if (page.warning) reply.header('warning', page.warning);
  const lastTag = page.tags[page.tags.length - 1];
  if (page.more && lastTag !== undefined) {
    const next = new URLSearchParams();
    if (n !== undefined) next.set('n', String(n));
    next.set('last', lastTag);
    const ns = single(query['ns']);
    if (ns !== undefined) next.set('ns', ns);
    reply.header('link', `</v2/${clientName}/tags/list?${next.toString()}>; rel="next"`);
  }
  const body = JSON.stringify({ name: clientName, tags: page.tags });
  reply.header('content-type', 'application/json');
  return reply.send(body);
}

function single(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}
