import type { FastifyReply, FastifyRequest } from 'fastify';
import { OciError } from '../oci/errors.js';

/** Pages are bounded so that one request cannot ask for an unbounded response. */
const MAX_PAGE = 10_000;

export interface PageQuery {
  n: number | undefined;
  last: string | undefined;
}

/** A query parameter given once or several times: the first value. */
export function queryParam(request: FastifyRequest, name: string): string | undefined {
  const v = (request.query as Record<string, string | string[] | undefined>)[name];
  return Array.isArray(v) ? v[0] : v;
}

/** `n` and `last` of the distribution spec's paginated lists (tags, catalog). */
export function parsePageQuery(request: FastifyRequest): PageQuery {
  const nRaw = queryParam(request, 'n');
  let n: number | undefined;
  if (nRaw !== undefined) {
    if (!/^\d{1,9}$/.test(nRaw)) {
      throw new OciError('PAGINATION_NUMBER_INVALID', 'n must be a non-negative integer', { detail: { n: nRaw.slice(0, 50) } });
    }
    n = Math.min(Number(nRaw), MAX_PAGE);
  }
  return { n, last: queryParam(request, 'last') };
}

/** The `Link: <...>; rel="next"` header for the page after the one ending at `lastItem`. */
export function setNextLink(
  reply: FastifyReply,
  path: string,
  n: number | undefined,
  lastItem: string,
  extra: Record<string, string> = {},
): void {
  const next = new URLSearchParams();
  if (n !== undefined) next.set('n', String(n));
  next.set('last', lastItem);
  for (const [k, v] of Object.entries(extra)) next.set(k, v);
  reply.header('link', `<${path}?${next.toString()}>; rel="next"`);
}
