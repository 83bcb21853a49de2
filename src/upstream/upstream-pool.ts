import type { Agent } from 'undici';
import type { UpstreamConfig } from '../config/types.js';
import { fallbackConfig } from '../config/upstreams.js';
import { Lru } from '../proxy/lru.js';
import { createUpstreamDispatcher } from './dispatcher.js';
import { TokenCache } from './token-cache.js';
import { UpstreamClient, type FailoverLog, type UpstreamObserver } from './upstream-client.js';

/**
 * The identity of an upstream: its namespace's config entry (namespace + host). Two namespaces never share
 * a client or a download, even when they name the same host: their credentials, and so what they may
 * see, can differ. The entry's fallback hosts belong to the same upstream (and the same downloads).
 */
export function upstreamKey(config: UpstreamConfig): string {
  return `${config.namespace}\0${config.host}`;
}

export interface UpstreamPoolOptions {
  /**
   * Whether an upstream is one the operator configured: its client (agent, tokens) is kept for the
   * process's life. Others are named by clients (`?ns=` with open mirroring) and live in a bounded LRU.
   * Default: entries from the config file.
   */
  isListed?: (config: UpstreamConfig) => boolean;
  /** Unlisted upstreams with a client at once (default 256); the least recently used one goes first. */
  maxUnlisted?: number;
  /** An unlisted upstream's client unused for this long is dropped (default 10 minutes). */
  unlistedIdleMs?: number;
  /** Bytes of Bearer tokens kept for listed upstreams, and for unlisted ones (default 4 MiB each). */
  tokenCacheBytes?: number;
  createDispatcher?: (config: UpstreamConfig) => Agent;
  now?: () => number;
  /** Where failovers to fallback hosts and the primary's return are logged. */
  log?: FailoverLog;
}

interface Entry {
  client: UpstreamClient;
  /** The primary host's agent, then one per fallback host (each with its own TLS settings). */
  dispatchers: Agent[];
}

export const DEFAULT_MAX_UNLISTED = 256;
export const DEFAULT_UNLISTED_IDLE_MS = 10 * 60_000;

/**
 * One client (and one connection pool) per upstream, created on first use. Configured upstreams keep
 * theirs; the ones clients name are bounded, so a stream of distinct namespaces cannot grow memory
 * without limit (each agent and its tokens cost a few KiB). An evicted client's agent is closed once its
 * running requests were sent; bodies already streaming finish first.
 */
export class UpstreamPool {
  private readonly listed = new Map<string, Entry>();
  private readonly unlisted: Lru<Entry>;
  private readonly listedTokens: TokenCache;
  // Tokens of client-named upstreams apart, so that a flood of them cannot push out the configured ones'.
  private readonly unlistedTokens: TokenCache;
  /** Agents being closed after eviction (awaited by close() and destroy()). */
  private readonly retiring = new Set<Promise<void>>();
  private readonly retired = new Set<Agent>();
  private readonly isListed: (config: UpstreamConfig) => boolean;
  private readonly createDispatcher: (config: UpstreamConfig) => Agent;
  private readonly now: () => number;
  private readonly log: FailoverLog | undefined;

  constructor(
    private readonly observer?: UpstreamObserver,
    options: UpstreamPoolOptions = {},
  ) {
    this.isListed = options.isListed ?? ((c) => c.explicit);
    this.createDispatcher = options.createDispatcher ?? createUpstreamDispatcher;
    const now = options.now ?? Date.now;
    this.now = now;
    this.log = options.log;
    this.unlisted = new Lru<Entry>(options.maxUnlisted ?? DEFAULT_MAX_UNLISTED, () => 1, {
      idleMs: options.unlistedIdleMs ?? DEFAULT_UNLISTED_IDLE_MS,
      now,
      onEvict: (_key, entry) => this.retire(entry),
    });
    this.listedTokens = new TokenCache({ now, maxBytes: options.tokenCacheBytes });
    this.unlistedTokens = new TokenCache({ now, maxBytes: options.tokenCacheBytes });
  }

  client(config: UpstreamConfig): UpstreamClient {
    const key = upstreamKey(config);
    const listed = this.isListed(config);
    let entry = listed ? this.listed.get(key) : this.unlisted.get(key);
    if (!entry) {
      const dispatcher = this.createDispatcher(config);
      const tokens = listed ? this.listedTokens : this.unlistedTokens;
      const fallbacks = config.fallbackHosts.map((f) => {
        const hostConfig = fallbackConfig(config, f);
        return { config: hostConfig, dispatcher: this.createDispatcher(hostConfig) };
      });
      const client = new UpstreamClient(config, dispatcher, this.observer, { tokens, fallbacks, log: this.log, now: this.now });
      entry = { dispatchers: [dispatcher, ...fallbacks.map((f) => f.dispatcher)], client };
      if (listed) this.listed.set(key, entry);
      else this.unlisted.set(key, entry);
    }
    return entry.client;
  }

  /** Clients and tokens held now (tests, metrics). */
  get sizes(): { listed: number; unlisted: number; listedTokens: number; unlistedTokens: number } {
    this.unlisted.prune();
    return {
      listed: this.listed.size,
      unlisted: this.unlisted.size,
      listedTokens: this.listedTokens.size,
      unlistedTokens: this.unlistedTokens.size,
    };
  }

  async close(): Promise<void> {
    const all = this.takeAll();
    await Promise.all([...all.flatMap((e) => e.dispatchers.map((d) => d.close().catch(() => undefined))), ...this.retiring]);
  }

  /** Like close(), but aborts running requests and downloads instead of waiting for them (shutdown after the grace period). */
  async destroy(): Promise<void> {
    const all = [...this.takeAll().flatMap((e) => e.dispatchers), ...this.retired];
    await Promise.all(all.map((d) => d.destroy().catch(() => undefined)));
  }

  private takeAll(): Entry[] {
    const all = [...this.listed.values(), ...this.unlisted.clear()];
    this.listed.clear();
    return all;
  }

  /** Closes an evicted client's agent once it sends nothing; responses it is streaming finish first. */
  private retire(entry: Entry): void {
    for (const d of entry.dispatchers) this.retired.add(d);
    const done: Promise<void> = entry.client
      .idle()
      .then(() => Promise.all(entry.dispatchers.map((d) => d.close())))
      .then(() => undefined)
      .catch(() => undefined)
      .finally(() => {
        this.retiring.delete(done);
        for (const d of entry.dispatchers) this.retired.delete(d);
      });
    this.retiring.add(done);
  }
}
