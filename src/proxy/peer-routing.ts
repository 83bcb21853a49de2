import type { Cluster } from '../cluster/cluster.js';
import type { PeerFailure } from '../cluster/peer-client.js';
import { OciError, type OciErrorCode } from '../oci/errors.js';

/** What the cache policy needs to know of a request's origin to decide whether to forward it. */
export interface RequestOrigin {
  /** It came from a peer (the hop header): served here, never forwarded again. */
  hop?: boolean | undefined;
  /** The client's Authorization header, passed on to the owner unchanged (the client's rights, no more). */
  authorization?: string | undefined;
}

/** The cluster as the cache policy sees it: who owns what, how to ask, and who stores what. */
export interface PeerRouting {
  cluster: Cluster;
  /**
   * `shared`: one bucket for all replicas; the owner stores, every replica reads it.
   * `own`: one root per replica; what a peer served is streamed, not kept (unless keepCopies).
   */
  storage: 'shared' | 'own';
  /** `own` storage: keep a copy of what an owner served (`--peer-cache-copies`). */
  keepCopies: boolean;
}

/** The owner's base URL when a request for `key` should go to it; undefined: serve it here. */
export function ownerToAsk(routing: PeerRouting | undefined, key: string, origin: RequestOrigin | undefined): string | undefined {
  if (!routing || origin?.hop) return undefined;
  const owner = routing.cluster.ownerOf(key);
  return owner && !owner.self ? owner.peer : undefined;
}

/** Whether this replica keeps what an owner served it: only with its own storage and --peer-cache-copies. */
export function keepsPeerCopies(routing: PeerRouting): boolean {
  return routing.storage === 'own' && routing.keepCopies;
}

/**
 * The owner's answers that are answers for the client: the content is unknown there, the upstream
 * denied it, or the owner's upstream failed (asking that upstream again from here would cost a second
 * request for the same failure). Everything else (a peer that is down or answered nonsense, an auth
 * disagreement between replicas) is served here as if alone.
 */
const CLIENT_ANSWERS = new Set<OciErrorCode>([
  'BLOB_UNKNOWN',
  'MANIFEST_UNKNOWN',
  'NAME_UNKNOWN',
  'DENIED',
  'TOOMANYREQUESTS',
  'UPSTREAM_ERROR',
  'UPSTREAM_UNAVAILABLE',
  'UPSTREAM_TIMEOUT',
]);

/** The OCI error to answer the client with for an owner's failure, or undefined to serve the request here. */
export function ownerAnswer(failure: PeerFailure, namespace: string): OciError | undefined {
  if (failure.peerDown || !CLIENT_ANSWERS.has(failure.code as OciErrorCode)) return undefined;
  return new OciError(failure.code as OciErrorCode, failure.message, { detail: { namespace, from: 'peer' } });
}
