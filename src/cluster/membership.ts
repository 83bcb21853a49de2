import type { Logger } from 'pino';
import { lookupARecords, type LookupAddresses } from './dns-lookup.js';
import type { ClusterObserver } from './events.js';
import { peerUrlFor, type PeerSource } from './peer-address.js';
import { PeerHealth } from './peer-health.js';
import { rendezvousOwner } from './rendezvous.js';

export const DNS_REFRESH_MS = 10_000;
const FIRST_LOOKUP_WAIT_MS = 3_000;

export interface MembershipOptions {
  source: PeerSource;
  /** This replica's canonical base URL (`--advertise`); how it finds itself in the member list. */
  self: string;
  /** For `dns+http://`: the name's addresses. Default: A and AAAA records from DNS. */
  lookup?: LookupAddresses | undefined;
  /** How often a DNS source is resolved again. Default 10 s. */
  refreshMs?: number | undefined;
  health?: PeerHealth | undefined;
  log?: Logger | undefined;
  observer?: Pick<ClusterObserver, 'membershipChanged'> | undefined;
}

/** Who owns a key: a peer's base URL, and whether that is this replica. */
export interface Owner {
  peer: string;
  self: boolean;
}

/**
 * The replicas of the cluster and who owns which key. Members come from the static `--peers` list, or
 * from a DNS name resolved at start() and every 10 s after (a failed lookup keeps the last set; an empty
 * answer empties it). A replica is recognised as itself by its `--advertise` URL; with DNS it is a member
 * only once the name lists it (a replica not yet ready forwards, as the others expect it to).
 *
 * Ownership is rendezvous hashing over the live members: the members minus the peers PeerHealth has
 * marked down (never this replica). With no live member, nothing is owned and every replica serves alone.
 */
export class Membership {
  readonly self: string;
  readonly health: PeerHealth;
  private readonly source: PeerSource;
  private readonly lookup: LookupAddresses;
  private readonly refreshMs: number;
  private readonly log: Logger | undefined;
  private readonly observer: MembershipOptions['observer'];
  private current: readonly string[] = [];
  private timer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | undefined;
  private lookupFailing = false;
  private reported = false;

  constructor(options: MembershipOptions) {
    this.self = options.self;
    this.source = options.source;
    this.lookup = options.lookup ?? lookupARecords;
    this.refreshMs = options.refreshMs ?? DNS_REFRESH_MS;
    this.health = options.health ?? new PeerHealth();
    this.log = options.log;
    this.observer = options.observer;
    if (this.source.kind === 'static') this.setMembers(this.source.urls);
  }

  /** Every member, sorted (this replica included when listed), whether up or down. */
  members(): readonly string[] {
    return this.current;
  }

  /** The members that may own keys now: all but the peers marked down. */
  live(): string[] {
    return this.current.filter((p) => p === this.self || !this.health.isDown(p));
  }

  ownerOf(key: string): Owner | undefined {
    const peer = rendezvousOwner(key, this.live());
    return peer === undefined ? undefined : { peer, self: peer === this.self };
  }

  /**
   * Resolves a DNS source once (waiting at most 3 s: a slow resolver must not hold the server's start;
   * until it answers, the replica works alone), then again every refreshMs (the timer holds no process).
   */
  async start(): Promise<void> {
    if (this.source.kind !== 'dns' || this.timer) return;
    this.timer = setInterval(() => void this.refresh(), this.refreshMs);
    this.timer.unref();
    let wait: NodeJS.Timeout | undefined;
    await Promise.race([this.refresh(), new Promise<void>((r) => (wait = setTimeout(r, FIRST_LOOKUP_WAIT_MS)))]);
    clearTimeout(wait);
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One DNS round (concurrent callers share it). Never throws: a failed lookup keeps the last set. */
  refresh(): Promise<void> {
    const source = this.source;
    if (source.kind !== 'dns') return Promise.resolve();
    this.refreshing ??= (async () => {
      try {
        const addresses = await this.lookup(source.name);
        if (this.lookupFailing) this.log?.info({ name: source.name }, 'peer DNS lookup works again');
        this.lookupFailing = false;
        this.setMembers(addresses.map((a) => peerUrlFor(source.scheme, a, source.port)));
      } catch (e) {
        // A resolver outage must not dissolve the cluster: keep the members known last.
        if (!this.lookupFailing) {
          this.log?.warn(
            { name: source.name, err: (e as Error).message, members: this.current.length },
            'peer DNS lookup failed; keeping the last members',
          );
        }
        this.lookupFailing = true;
      } finally {
        this.refreshing = undefined;
      }
    })();
    return this.refreshing;
  }

  private setMembers(urls: readonly string[]): void {
    const next = [...new Set(urls)].sort();
    const changed = next.length !== this.current.length || next.some((p, i) => p !== this.current[i]);
    // The first answer is reported even when empty: the gauge then reads 0, not "no sample".
    if (!changed && this.reported) return;
    this.reported = true;
    const added = next.filter((p) => !this.current.includes(p));
    const removed = this.current.filter((p) => !next.includes(p));
    this.current = next;
    this.health.retain(new Set(next));
    this.observer?.membershipChanged(next.length);
    this.log?.info({ members: next, added, removed, self: this.self, selfListed: next.includes(this.self) }, 'cluster membership');
  }
}
