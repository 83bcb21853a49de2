import type { FastifyReply, FastifyRequest } from 'fastify';
import { parsePageQuery, setNextLink } from '../pagination.js';
import type { V2Deps } from './v2.js';

/**
 * `GET /v2/_catalog?n=&last=`: the repositories this mirror has cached (those with at least one tag
 * record), never the upstreams' (a mirror cannot list those). Names are as clients pull them:
 * `<namespace>/<repository>` (the path-prefix form the resolver understands), or the bare repository
 * for the default namespace. Lexical order; `last` is exclusive; a Link header points to the next page.
 * Namespaces whose client_auth the request does not satisfy are left out.
 */
export async function serveCatalog(deps: V2Deps, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
  request.ctx.route = 'catalog';
  const { n, last } = parsePageQuery(request);

  const names = await visibleNames(deps, request.headers.authorization, request.ip);
  const after = last === undefined ? names : names.filter((name) => name > last);
  const page = n === undefined ? after : after.slice(0, n);
  const lastName = page[page.length - 1];
  if (page.length < after.length && lastName !== undefined) {
    setNextLink(reply, '/v2/_catalog', n, lastName);
  }
  const body = JSON.stringify({ repositories: page });
  reply.header('content-type', 'application/json').header('content-length', Buffer.byteLength(body));
  return request.method === 'HEAD' ? reply.send() : reply.send(body);
}

async function visibleNames(deps: V2Deps, authorization: string | undefined, client: string): Promise<string[]> {
  const defaultNamespace = deps.resolver.defaultNamespace;
  const allowed = new Map<string, boolean>();
  const names = new Set<string>();
  for (const repo of await deps.mirror.catalog.repositories()) {
    let ok = allowed.get(repo.namespace);
    if (ok === undefined) {
      ok = await mayRead(deps, repo.namespace, authorization, client);
      allowed.set(repo.namespace, ok);
    }
    if (ok) names.add(repo.namespace === defaultNamespace ? repo.repository : `${repo.namespace}/${repo.repository}`);
  }
  return [...names].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Whether the namespace is still mirrored and the request passes its client_auth. */
async function mayRead(deps: V2Deps, namespace: string, authorization: string | undefined, client: string): Promise<boolean> {
  try {
    const upstream = deps.resolver.upstreamFor(namespace);
    await deps.clientAuth.check(upstream.clientAuthFile, namespace, authorization, client);
    return true;
  } catch {
    return false;
  }
}
