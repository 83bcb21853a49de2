import type { FastifyRequest } from 'fastify';
import type { RequestOrigin } from '../proxy/peer-routing.js';

/** What forwarding to an owner replica needs of a request: whether a peer sent it, and the client's credentials. */
export function requestOrigin(request: FastifyRequest): RequestOrigin {
  return { hop: request.ctx.hop === true, authorization: request.headers.authorization };
}
