import type { Logger } from 'pino';
import type { LookupAddresses } from './dns-lookup.js';
import type { ClusterObserver, PeerRequestKind } from './events.js';
import { Membership, type Owner } from './membership.js';
import type { PeerSource } from './peer-address.js';
import { PeerClient } from './peer-client.js';
import { PeerHealth } from './peer-health.js';

/** `--peers`, `--advertise`, `--peer-cache-copies`, checked (src/cli/cluster-options.ts). */
export interface ClusterSettings {
  peers: PeerSource;
  /** This replica's canonical base URL, as the peers reach it. */
  advertise: string;
  /** Filesystem mode: keep a copy of what a peer served (default: stream it, keep nothing). */
  peerCacheCopies: boolean;
}

export interface ClusterOptions {
  settings: ClusterSettings;
  log?: Logger | undefined;
  observer?: ClusterObserver | undefined;
  /** Tests: a resolver for `dns+http://` names, and timings. */
  lookup?: LookupAddresses | undefined;
  refreshMs?: number | undefined;
  connectTimeoutMs?: number | undefined;
  readTimeoutMs?: number | undefined;
  health?: PeerHealth | undefined;
}

/** The replicas that cooperate: who they are, who owns what, and the client that asks the owner. */
export class Cluster {
  readonly settings: ClusterSettings;
  readonly membership: Membership;
  readonly client: PeerClient;
  private readonly observer: ClusterObserver | undefined;

  constructor(options: ClusterOptions) {
    this.settings = options.settings;
    this.observer = options.observer;
    const log = options.log?.child({ component: 'cluster' });
    const observer = options.observer;
    const health =
      options.health ??
      new PeerHealth({
        onMarkedDown: (peer, reason, forMs) => {
          observer?.peerMarkedDown();
          log?.warn({ peer, reason, forMs }, 'peer marked down');
        },
      });
    this.membership = new Membership({
      source: options.settings.peers,
      self: options.settings.advertise,
      lookup: options.lookup,
      refreshMs: options.refreshMs,
      health,
      log,
      observer,
    });
    this.client = new PeerClient({ health, observer, connectTimeoutMs: options.connectTimeoutMs, readTimeoutMs: options.readTimeoutMs });
  }

  /** The owner of a key among the live members; undefined when there is none (serve locally). */
  ownerOf(key: string): Owner | undefined {
    return this.membership.ownerOf(key);
  }

  /**
   * A failure the caller found in a peer's answer the client could not see: a blob body that does not
   * hash to its digest. The peer is marked down like for a transport failure.
   */
  peerFailed(peer: string, kind: PeerRequestKind, code: string): void {
    this.membership.health.markDown(peer, code);
    this.observer?.peerError(kind, code);
  }

  /** Resolves a DNS membership once before the server serves, then keeps it fresh. */
  start(): Promise<void> {
    return this.membership.start();
  }

  async close(): Promise<void> {
    this.membership.stop();
    await this.client.close();
  }
}
