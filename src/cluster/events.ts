/** What the cluster layer reports, for metrics (src/metrics/cluster-metrics.ts) and tests. */
export interface ClusterObserver {
  /** The member set changed (or was first known): its size, this replica included when listed. */
  membershipChanged(size: number): void;
  /** A request was sent to its owner (kind: 'blob' | 'manifest'). */
  forwarded(kind: PeerRequestKind): void;
  /** A peer exchange failed (code: a short reason such as ECONNREFUSED, timeout, status_503, truncated). */
  peerError(kind: PeerRequestKind, code: string): void;
  /** A peer went from up to down. */
  peerMarkedDown(): void;
}

export type PeerRequestKind = 'blob' | 'manifest';
