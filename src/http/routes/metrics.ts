import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import '../request-context.js';
import { addSecurityHeaders } from '../security-headers.js';

/** What the route needs of a metrics registry (prom-client's Registry has this shape). */
export interface MetricsSource {
  readonly contentType: string;
  metrics(): Promise<string>;
}

/** GET /metrics in the Prometheus text format. */
export async function metricsRoutes(app: FastifyInstance, deps: { source: MetricsSource }): Promise<void> {
  app.get('/metrics', async (request, reply) => {
    if (request.ctx) request.ctx.route = 'metrics';
    const body = await deps.source.metrics();
    return reply.header('content-type', deps.source.contentType).header('cache-control', 'no-store').send(body);
  });
}

/** A separate listener (--metrics-listen) that serves only /metrics; everything else is 404. */
export async function buildMetricsApp(source: MetricsSource, log: Logger): Promise<FastifyInstance> {
  const app: FastifyInstance = Fastify({
    loggerInstance: log as unknown as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
  });
  addSecurityHeaders(app.server);
  app.decorateRequest('ctx', null as never);
  app.addHook('onRequest', async (request) => {
    request.ctx = { route: 'other' };
  });
  await app.register(metricsRoutes, { source });
  return app;
}
