import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Resolver } from '../../resolve/resolver.js';
import type { StatusSource } from '../../status/types.js';
import type { ClientAuth } from '../client-auth.js';
import { parsePageQuery, queryParam } from '../pagination.js';
import { renderLivePart, renderStatusPage } from './status-page-html.js';

/** Tag rows per page of the repository listing: each costs a tag record and its manifests. */
export const DEFAULT_STATUS_ROWS = 50;
export const MAX_STATUS_ROWS = 200;
const REFRESH_ACTIVE_MS = 2_000;
const REFRESH_IDLE_MS = 5_000;

export interface StatusPageDeps {
  source: StatusSource;
  resolver: Resolver;
  clientAuth: ClientAuth;
}

/**
 * `GET /`: the status page (HTML), and `GET /status.json`, the same data as JSON. Query: `n` tag rows of
 * the repository listing (default 50, at most 200; 0 for none), `last` to continue after a row,
 * `login` to be challenged for credentials, `part=live` for only the part the page refreshes. When every namespace requires client_auth, so does the page;
 * otherwise it is open, but namespaces whose client_auth the request does not satisfy are left out of
 * every section, as `/v2/_catalog` leaves them out.
 */
export async function statusPageRoutes(app: FastifyInstance, deps: StatusPageDeps): Promise<void> {
  app.get('/', async (request, reply) => serveStatus(deps, request, reply, 'html'));
  app.get('/status.json', async (request, reply) => serveStatus(deps, request, reply, 'json'));
}

async function serveStatus(
  deps: StatusPageDeps,
  request: FastifyRequest,
  reply: FastifyReply,
  format: 'html' | 'json',
): Promise<FastifyReply> {
  request.ctx.route = 'status';
  const authorization = request.headers.authorization;
  // checkBase: credentials any protected namespace accepts (the challenge a browser answers with a login dialog).
  if (deps.source.protectedOnly || queryParam(request, 'login') !== undefined) await deps.clientAuth.checkBase(authorization, request.ip);
  const { n, last } = parsePageQuery(request);
  const livePart = format === 'html' && queryParam(request, 'part') === 'live';
  const limit = livePart ? 0 : Math.min(n ?? DEFAULT_STATUS_ROWS, MAX_STATUS_ROWS);
  const viewer = viewerAccess(deps, authorization, request.ip);
  const snapshot = await deps.source.snapshot({ visible: viewer.visible, limit, after: last });

  reply.header('cache-control', 'no-store').header('x-content-type-options', 'nosniff').header('referrer-policy', 'no-referrer');
  if (format === 'json') return reply.header('content-type', 'application/json; charset=utf-8').send(JSON.stringify(snapshot));

  const nonce = randomBytes(16).toString('base64');
  const view = {
    nonce,
    refreshActiveMs: REFRESH_ACTIVE_MS,
    refreshIdleMs: REFRESH_IDLE_MS,
    limit,
    after: last,
    hiddenProtected: viewer.hiddenProtected(),
  };
  const body = livePart ? renderLivePart(snapshot, view) : renderStatusPage(snapshot, view);
  return (
    reply
      .header('content-type', 'text/html; charset=utf-8')
      // Escaping is the defence; this is the second fence: no script or style runs but the page's own.
      .header(
        'content-security-policy',
        `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
      )
      .header('x-frame-options', 'DENY')
      .send(body)
  );
}

/**
 * Which namespaces this request may see: those without client_auth, and those whose htpasswd file
 * accepts its credentials (checked once per file per request: a wrong password costs one bcrypt per file).
 */
function viewerAccess(
  deps: StatusPageDeps,
  authorization: string | undefined,
  client: string,
): { visible: (namespace: string) => Promise<boolean>; hiddenProtected: () => boolean } {
  const byFile = new Map<string, Promise<boolean>>();
  let hidden = false;
  const visible = async (namespace: string): Promise<boolean> => {
    let file: string | undefined;
    try {
      file = deps.resolver.upstreamFor(namespace).clientAuthFile;
    } catch {
      return false; // no longer mirrored
    }
    if (file === undefined) return true;
    let ok = byFile.get(file);
    if (!ok) {
      ok = deps.clientAuth.check(file, namespace, authorization, client).then(
        () => true,
        () => false,
      );
      byFile.set(file, ok);
    }
    if (!(await ok)) hidden = true;
    return ok;
  };
  return { visible, hiddenProtected: () => hidden };
}
