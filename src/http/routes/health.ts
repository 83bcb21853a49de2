import type { FastifyInstance } from 'fastify';
import type { Storage } from '../../storage/storage.js';

/**
 * Liveness: the process serves. Readiness: the storage can be written. Upstream reachability is
 * deliberately not part of readiness: during an upstream outage the mirror still serves its cache.
 */
export async function healthRoutes(app: FastifyInstance, deps: { storage: Storage }): Promise<void> {
  app.get('/healthz', async (request, reply) => {
    request.ctx.route = 'health';
    return reply.header('content-type', 'application/json').send('{"status":"ok"}');
  });
  app.get('/readyz', async (request, reply) => {
    request.ctx.route = 'health';
    try {
      await deps.storage.checkWritable();
      return reply.header('content-type', 'application/json').send('{"status":"ready"}');
    } catch (e) {
      const reason = (e as NodeJS.ErrnoException).code ?? 'storage unavailable';
      return reply
        .code(503)
        .header('content-type', 'application/json')
        .send(JSON.stringify({ status: 'not ready', reason }));
    }
  });
}
