import type { IncomingMessage, Server, ServerResponse } from 'node:http';

/**
 * Headers every response carries, whoever writes it: routes, error and not-found handlers, Fastify's own
 * early answers (bad URL, 503 while closing) and the parser's rejections (see app.ts clientErrorHandler).
 * `nosniff`: a browser must never render a blob or manifest (client-chosen bytes) as HTML or script.
 */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = { 'x-content-type-options': 'nosniff' };

/** Sets SECURITY_HEADERS on each response before any other 'request' listener (Fastify's) runs. */
export function addSecurityHeaders(server: Server): void {
  const entries = Object.entries(SECURITY_HEADERS);
  server.prependListener('request', (_req: IncomingMessage, res: ServerResponse) => {
    for (const [name, value] of entries) res.setHeader(name, value);
  });
}
