/**
 * Which peers failed lately. A peer that refused a connection, timed out or broke a response is down
 * for a back-off period (5 s, doubling with each failure in a row, at most 60 s); its first success
 * after that clears the record. A down peer owns nothing (see Membership.ownerOf): its keys go to their
 * runner-up on every replica that saw it fail, so they still cost one upstream download, not one per replica.
 */
export interface PeerHealthOptions {
  baseMs?: number;
  maxMs?: number;
  now?: () => number;
  /** Called when a peer goes from up to down (not for a repeated failure while down). */
  onMarkedDown?: (peer: string, reason: string, forMs: number) => void;
}

interface Failure {
  count: number;
  until: number;
}

export const PEER_DOWN_BASE_MS = 5_000;
export const PEER_DOWN_MAX_MS = 60_000;

export class PeerHealth {
  private readonly failures = new Map<string, Failure>();
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly now: () => number;
  private readonly onMarkedDown: PeerHealthOptions['onMarkedDown'];

  constructor(options: PeerHealthOptions = {}) {
    this.baseMs = options.baseMs ?? PEER_DOWN_BASE_MS;
    this.maxMs = options.maxMs ?? PEER_DOWN_MAX_MS;
    this.now = options.now ?? Date.now;
    this.onMarkedDown = options.onMarkedDown;
  }

  isDown(peer: string): boolean {
    const f = this.failures.get(peer);
    return f !== undefined && this.now() < f.until;
  }

  /** Records a failure; returns how long the peer is now down for. */
  markDown(peer: string, reason: string): number {
    const wasDown = this.isDown(peer);
    const count = (this.failures.get(peer)?.count ?? 0) + 1;
    const forMs = Math.min(this.maxMs, this.baseMs * 2 ** Math.min(count - 1, 20));
    this.failures.set(peer, { count, until: this.now() + forMs });
    if (!wasDown) this.onMarkedDown?.(peer, reason, forMs);
    return forMs;
  }

  /** A successful exchange: the peer starts from a clean record. */
  markUp(peer: string): void {
    this.failures.delete(peer);
  }

  /** Drops records of peers that left the membership, so the map stays as small as the cluster. */
  retain(peers: ReadonlySet<string>): void {
    for (const peer of this.failures.keys()) if (!peers.has(peer)) this.failures.delete(peer);
  }

  downPeers(): string[] {
    return [...this.failures.keys()].filter((p) => this.isDown(p));
  }
}
