import type { CacheOutcome } from '../proxy/events.js';
import type { ResponseProgress } from './response-progress.js';

/** What a /v2 handler learned, for the one log line per request and for metrics. */
export interface RequestContext {
  route: string;
  namespace?: string | undefined;
  repository?: string | undefined;
  outcome?: CacheOutcome | undefined;
  /** This request linked the digest to the repository (its upstream confirmed it): logged as `linked`. */
  linked?: boolean | undefined;
  bytes?: number | undefined;
  /** Which upstream source kind ('ns', 'path', ...) resolved the namespace. */
  source?: string | undefined;
  /**
   * The request came from a peer replica (it carries the hop header, src/cluster/peer-client.ts): it is
   * served here, never forwarded again, and logged and counted as answered for a peer.
   */
  hop?: boolean | undefined;
  /** What of the response went out (set for every request by the app's onRequest hook). */
  progress?: ResponseProgress | undefined;
  /** The request was logged and counted (by onResponse, or by the close of an aborted response). */
  done?: boolean | undefined;
}

declare module 'fastify' {
  interface FastifyRequest {
    ctx: RequestContext;
  }
}
