import type { CacheOutcome } from '../proxy/events.js';

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
}

declare module 'fastify' {
  interface FastifyRequest {
    ctx: RequestContext;
  }
}
