import { STATUS_CODES } from 'node:http';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { OciError } from '../oci/errors.js';
import type { Logger } from 'pino';
import type { Mirror } from '../proxy/mirror.js';
import type { Resolver } from '../resolve/resolver.js';
import type { ClientAuth } from './client-auth.js';
import { sendOciError, statusOf, toOciError } from './errors.js';
import { addSecurityHeaders, SECURITY_HEADERS } from './security-headers.js';
import { registerResponseLimits, type ResponseLimits } from './response-limits.js';
import './request-context.js';
import { lazyChildLoggerFactory } from './request-logger.js';
import { ResponseProgress } from './response-progress.js';
import { v2Routes } from './routes/v2.js';
import { errorText } from '../error-text.js';

export interface AppOptions {
  mirror: Mirror;
  resolver: Resolver;
  clientAuth: ClientAuth;
  log: Logger;
  /** Extra plugins (health, metrics) registered by the caller. */
  plugins?: ((app: FastifyInstance) => Promise<void>)[];
  /** Called once per finished request, for metrics. */
  onRequestDone?: (info: {
    route: string;
    method: string;
    status: number;
    namespace: string | undefined;
    outcome: string | undefined;
    bytes: number | undefined;
    seconds: number;
    hop?: boolean | undefined;
  }) => void;
  /** Send timeout and per-client cap (defaults: 60 s, no cap). */
  limits?: ResponseLimits;
}

/** The status logged for a request whose client left before any response was sent (nginx's convention). */
const CLIENT_CLOSED_REQUEST = 499;

/** Request lines and headers beyond this are refused by Node's parser (431). */
export const MAX_HEADER_BYTES = 16 * 1024;

export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const app: FastifyInstance = Fastify({
    loggerInstance: options.log as unknown as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    childLoggerFactory: lazyChildLoggerFactory(options.log),
    routerOptions: { maxParamLength: 1024 },
    http: { maxHeaderSize: MAX_HEADER_BYTES },
    // Clients may send any Accept-Encoding; we never encode bodies (digests are of the raw bytes).
    return503OnClosing: true,
    // Errors Fastify raises before routing (malformed percent-encoding, ...) get OCI bodies too.
    frameworkErrors: (error, _request, reply) => {
      void sendOciError(reply as unknown as FastifyReply, toOciError(error));
    },
    // Requests Node's parser rejects (bad bytes, unknown method tokens, oversized headers) never reach
    // Fastify: answer them with an OCI body and the parser's status, then close.
    clientErrorHandler: (error, socket) => {
      if (!socket.writable) return;
      const status = error.code === 'HPE_HEADER_OVERFLOW' ? 431 : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
      const body = JSON.stringify({
        errors: [{ code: 'UNSUPPORTED', message: 'malformed request', detail: { reason: error.code ?? 'parse error' } }],
      });
      socket.end(
        `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Bad Request'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
          `${Object.entries(SECURITY_HEADERS)
            .map(([k, v]) => `${k}: ${v}\r\n`)
            .join('')}connection: close\r\n\r\n${body}`,
      );
    },
  });

  addSecurityHeaders(app.server);
  app.decorateRequest('ctx', null as never);
  // Callback-style hooks: an async hook costs a promise and a microtask turn per request.
  app.addHook('onRequest', (request, reply, done) => {
    const progress = new ResponseProgress(request.raw, reply.raw);
    request.ctx = { route: 'other', progress };
    if (request.url.startsWith('/v2')) reply.header('docker-distribution-api-version', 'registry/2.0');
    // Fastify's onResponse runs on 'finish' only: a response whose client left would be neither logged nor counted.
    reply.raw.once('close', () => {
      if (progress.aborted) requestDone(request, reply);
    });
    done();
  });
  app.addHook('onResponse', (request, reply, done) => {
    requestDone(request, reply);
    done();
  });
  registerResponseLimits(app, options.limits ?? {}, app.log);

  /**
   * One log line and one metrics record per request. An aborted response says so, with the status it
   * sent (499, nginx's "client closed request", when it sent none) and the body bytes that went out.
   */
  const requestDone = (request: FastifyRequest, reply: FastifyReply): void => {
    const ctx = request.ctx;
    if (ctx.done) return;
    ctx.done = true;
    const aborted = ctx.progress?.aborted === true;
    const sent = ctx.progress?.bodyBytesSent;
    const status = aborted && !reply.raw.headersSent ? CLIENT_CLOSED_REQUEST : reply.statusCode;
    const seconds = reply.elapsedTime / 1000;
    options.onRequestDone?.({
      route: ctx.route,
      method: request.method,
      status,
      namespace: ctx.namespace,
      outcome: ctx.outcome,
      bytes: aborted ? sent : ctx.bytes,
      seconds,
      ...(ctx.hop ? { hop: true } : {}),
    });
    if (ctx.route === 'health' || ctx.route === 'metrics' || !options.log.isLevelEnabled('info')) return;
    request.log.info(
      {
        method: request.method,
        path: request.url.split('?')[0],
        namespace: ctx.namespace,
        repository: ctx.repository,
        via: ctx.source,
        status,
        bytes: ctx.bytes,
        sent,
        ...(aborted ? { aborted: true } : {}),
        ...(ctx.hop ? { hop: true } : {}),
        cache: ctx.outcome,
        linked: ctx.linked,
        ms: Math.round(reply.elapsedTime),
      },
      'request',
    );
  };

  app.setErrorHandler(async (error, request, reply) => {
    const oci = toOciError(error);
    if (statusOf(oci.code) >= 500) {
      const cause = oci.code === 'INTERNAL' ? error : (oci.cause ?? undefined);
      request.log.warn({ code: oci.code, err: errorText(cause ?? oci), path: request.url.split('?')[0] }, 'request failed');
    } else if (oci.cause !== undefined) {
      // A refusal whose real reason the client must not see (an unlisted namespace's address) is logged here.
      request.log.info({ code: oci.code, err: errorText(oci.cause), path: request.url.split('?')[0] }, 'request refused');
    }
    return sendOciError(reply, oci);
  });
  app.setNotFoundHandler(async (request, reply) => {
    // A method we do not route is a read-only mirror's 405, whatever the path.
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      reply.header('allow', 'GET, HEAD');
      return sendOciError(
        reply,
        new OciError('UNSUPPORTED', 'this registry is a read-only mirror: only pulls are supported', {
          detail: { method: request.method },
        }),
      );
    }
    return sendOciError(reply, toOciError({ statusCode: 404 }));
  });

  await app.register(v2Routes, { mirror: options.mirror, resolver: options.resolver, clientAuth: options.clientAuth });
  for (const plugin of options.plugins ?? []) await app.register(plugin);
  return app;
}
