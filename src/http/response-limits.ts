import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { OciError } from '../oci/errors.js';
import { ClientLimit } from './client-limit.js';
import { sendOciError } from './errors.js';
import { SendWatchdog } from './send-watchdog.js';

export const DEFAULT_SEND_TIMEOUT_MS = 60_000;
/** Seconds a client over its cap is told to wait: its other responses are blob transfers that take a while. */
const RETRY_AFTER_SECONDS = 5;

export interface ResponseLimits {
  /** Close a response whose client takes no bytes for this long (`--send-timeout`); 0: never. */
  sendTimeoutMs?: number | undefined;
  /** Responses in progress per client address; more get 429 (`--max-connections-per-client`); 0: no cap. */
  maxConnectionsPerClient?: number | undefined;
  /** Counted in metrics. */
  onSendTimeout?: (() => void) | undefined;
  onClientLimited?: (() => void) | undefined;
}

/**
 * What one client may hold of the server: a response it stopped reading is closed after the send
 * timeout (every route), and a client address gets at most N registry API responses at once. The cap
 * leaves /healthz, /readyz and /metrics alone: probes often come from the node address the node's
 * container runtime pulls from, and a refused liveness probe would restart the mirror.
 */
export function registerResponseLimits(app: FastifyInstance, limits: ResponseLimits, log: FastifyBaseLogger): void {
  const sendTimeoutMs = limits.sendTimeoutMs ?? DEFAULT_SEND_TIMEOUT_MS;
  if (sendTimeoutMs > 0) {
    const watchdog = new SendWatchdog(sendTimeoutMs, (stalled) => {
      log.warn({ ...stalled, sendTimeoutMs }, 'client took no bytes for the send timeout: connection closed');
      limits.onSendTimeout?.();
    });
    app.addHook('onRequest', (request, reply, done) => {
      watchdog.watch(reply.raw, request.socket.remoteAddress, request.method, request.url);
      done();
    });
    app.addHook('onClose', async () => watchdog.close());
  }

  const max = limits.maxConnectionsPerClient ?? 0;
  if (max > 0) {
    const cap = new ClientLimit(max);
    app.addHook('onRequest', async (request, reply) => {
      if (!request.url.startsWith('/v2')) return;
      const client = request.socket.remoteAddress ?? 'unknown';
      const release = cap.acquire(client);
      if (!release) {
        limits.onClientLimited?.();
        return sendOciError(
          reply,
          new OciError('TOOMANYREQUESTS', 'too many concurrent requests from this client address', {
            retryAfter: RETRY_AFTER_SECONDS,
            detail: { limit: max },
          }),
        );
      }
      // 'close' comes when the response has finished and when the connection went first.
      reply.raw.once('close', release);
    });
  }
}
