import { Counter, Gauge, type Registry } from 'prom-client';
import type { ClusterObserver, PeerRequestKind } from '../cluster/events.js';
import { METRIC_PREFIX } from './registry.js';

/** Route names of requests a peer may forward (src/http/routes/v2.ts) -> the kind label. */
const PEER_ROUTES: Record<string, PeerRequestKind> = { blobs: 'blob', manifests: 'manifest' };

/**
 * The cluster's metrics (`--peers`). No peer label: with DNS membership every restarted pod is a new
 * address, and the series would grow without bound.
 */
export class ClusterMetrics implements ClusterObserver {
  private readonly forwardedTotal: Counter<'kind'>;
  private readonly answeredTotal: Counter<'kind' | 'status'>;
  private readonly errorsTotal: Counter<'kind' | 'code'>;
  private readonly markedDownTotal: Counter;
  private readonly members: Gauge;

  constructor(registry: Registry) {
    const registers = [registry];
    const p = METRIC_PREFIX;
    this.forwardedTotal = new Counter({
      name: `${p}peer_requests_forwarded_total`,
      help: 'Requests this replica sent to the peer that owns the blob or manifest',
      labelNames: ['kind'],
      registers,
    });
    this.answeredTotal = new Counter({
      name: `${p}peer_requests_answered_total`,
      help: 'Requests this replica answered for a peer (they carry the hop header), by kind and status',
      labelNames: ['kind', 'status'],
      registers,
    });
    this.errorsTotal = new Counter({
      name: `${p}peer_errors_total`,
      help: 'Peer requests that failed (refused, timed out, cut short, a peer error status), by kind and code',
      labelNames: ['kind', 'code'],
      registers,
    });
    this.markedDownTotal = new Counter({
      name: `${p}peers_marked_down_total`,
      help: 'Times a peer was marked down after a failure (it owns nothing until its back-off ends)',
      registers,
    });
    this.members = new Gauge({
      name: `${p}cluster_members`,
      help: 'Replicas in the cluster membership (--peers), this one included when listed',
      registers,
    });
    // No sample without --peers: a 0 would read as a cluster that lost every member.
    this.members.remove();
  }

  membershipChanged(size: number): void {
    this.members.set(size);
  }

  forwarded(kind: PeerRequestKind): void {
    this.forwardedTotal.inc({ kind });
  }

  peerError(kind: PeerRequestKind, code: string): void {
    this.errorsTotal.inc({ kind, code: boundedCode(code) });
  }

  peerMarkedDown(): void {
    this.markedDownTotal.inc();
  }

  /** A request that carried the hop header finished (from MirrorMetrics.requestDone). */
  answered(route: string, status: number): void {
    const kind = PEER_ROUTES[route];
    if (kind !== undefined) this.answeredTotal.inc({ kind, status: String(status) });
  }
}

/** Error codes come from undici and Node (a fixed set) or `status_NNN`; anything else is "other". */
function boundedCode(code: string): string {
  return /^(?:[A-Z][A-Z0-9_]{1,40}|status_\d{3}|[a-z_]{1,30})$/.test(code) ? code : 'other';
}
