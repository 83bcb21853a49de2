import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { HOP_HEADER } from '../../cluster/hop.js';
import { OciError } from '../../oci/errors.js';
import type { Mirror } from '../../proxy/mirror.js';
import type { Resolver } from '../../resolve/resolver.js';
import type { ClientAuth } from '../client-auth.js';
import { sendOciError } from '../errors.js';
import { ResolveCache } from '../resolve-cache.js';
import { parseV2PathCached } from '../v2-path.js';
import { serveBlob } from './blobs.js';
import { serveCatalog } from './catalog.js';
import { serveManifest } from './manifests.js';
import { serveReferrers } from './referrers.js';
import { serveTags } from './tags.js';

export interface V2Deps {
  mirror: Mirror;
  resolver: Resolver;
  clientAuth: ClientAuth;
}

const WRITE_METHODS = ['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;

/** The pull API. One wildcard route; the path is parsed by us, so names of any depth route the same way. */
export async function v2Routes(app: FastifyInstance, deps: V2Deps): Promise<void> {
  const names = new ResolveCache(deps.resolver);
  const handler = (request: FastifyRequest, reply: FastifyReply) => handleV2(deps, names, request, reply);
  app.route({ method: ['GET', 'HEAD'], url: '/v2', handler });
  app.route({ method: ['GET', 'HEAD'], url: '/v2/', handler });
  app.route({ method: ['GET', 'HEAD'], url: '/v2/*', handler });
  const unsupported = async (request: FastifyRequest, reply: FastifyReply) => {
    request.ctx.route = 'unsupported';
    reply.header('allow', 'GET, HEAD');
    return sendOciError(
      reply,
      new OciError('UNSUPPORTED', 'this registry is a read-only mirror: only pulls are supported', {
        detail: { method: request.method },
      }),
    );
  };
  app.route({ method: [...WRITE_METHODS], url: '/v2', handler: unsupported });
  app.route({ method: [...WRITE_METHODS], url: '/v2/', handler: unsupported });
  app.route({ method: [...WRITE_METHODS], url: '/v2/*', handler: unsupported });
}

async function handleV2(deps: V2Deps, names: ResolveCache, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
  const rawUrl = request.raw.url ?? '/';
  const q = rawUrl.indexOf('?');
  const path = q < 0 ? rawUrl : rawUrl.slice(0, q);
  if (path === '/v2/_catalog') return serveCatalog(deps, request, reply);
  const parsed = parseV2PathCached(path);
  if (!parsed) {
    request.ctx.route = 'unknown';
    throw new OciError('NOT_FOUND', 'unknown endpoint', { detail: { path: path.slice(0, 200) } });
  }
  if (parsed.kind === 'base') {
    // Never contacts an upstream: clients call this to probe the mirror.
    request.ctx.route = 'base';
    await deps.clientAuth.checkBase(request.headers.authorization, request.ip);
    reply.header('content-type', 'application/json');
    return reply.send('{}');
  }
  request.ctx.route = parsed.kind;
  // Any value counts: a peer's request is served here whatever it says, so a loop cannot form.
  if (request.headers[HOP_HEADER] !== undefined) request.ctx.hop = true;
  const query = request.query as Record<string, string | string[] | undefined>;
  const nsParam = query['ns'];
  const ns = Array.isArray(nsParam) ? nsParam[0] : nsParam;
  const registryHeader = request.headers['x-registry'];
  let repo;
  try {
    repo = names.resolve({
      name: parsed.name,
      ns,
      registryHeader: Array.isArray(registryHeader) ? registryHeader[0] : registryHeader,
    });
  } catch (e) {
    // The conformance suite wants an invalid name on a manifest request to be a 404.
    if (parsed.kind === 'manifests' && e instanceof OciError && e.code === 'NAME_INVALID') {
      throw new OciError('NAME_UNKNOWN', 'invalid repository name', { detail: e.detail });
    }
    throw e;
  }
  // Only namespaces with client_auth check anything: the others skip the await (a promise and a turn).
  if (repo.upstream.clientAuthFile !== undefined) {
    await deps.clientAuth.check(repo.upstream.clientAuthFile, repo.namespace, request.headers.authorization, request.ip);
  }
  request.ctx.namespace = repo.namespace;
  request.ctx.repository = repo.repository;
  request.ctx.source = repo.source;
  // Echoed, canonical (`registry.local:5000` for a `/v2/registry.local_5000/...` path), whenever the
  // request named its namespace: shows the client which upstream answered.
  if (repo.source !== 'default') reply.header('oci-namespace', repo.namespace);

  switch (parsed.kind) {
    case 'manifests':
      return serveManifest(deps.mirror, repo, parsed.reference, request, reply);
    case 'blobs':
      return serveBlob(deps.mirror, repo, parsed.digest, request, reply);
    case 'tags':
      return serveTags(deps.mirror, repo, parsed.name, request, reply);
    case 'referrers':
      return serveReferrers(deps.mirror, repo, parsed.digest, request, reply);
  }
}
