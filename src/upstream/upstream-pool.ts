import type { Agent } from 'undici';
import type { UpstreamConfig } from '../config/types.js';
import { createUpstreamDispatcher } from './dispatcher.js';
import { UpstreamClient, type UpstreamObserver } from './upstream-client.js';

/**
 * The identity of an upstream: its namespace's config entry (namespace + host). Two namespaces never share
 * a client or a download, even when they name the same host: their credentials, and so what they may
 * see, can differ.
 */
export function upstreamKey(config: UpstreamConfig): string {
  return `${config.namespace}\0${config.host}`;
}

/** One client (and one connection pool) per upstream, created on first use and kept. */
export class UpstreamPool {
  private readonly clients = new Map<string, { client: UpstreamClient; dispatcher: Agent }>();

  constructor(private readonly observer?: UpstreamObserver) {}

  client(config: UpstreamConfig): UpstreamClient {
    const key = upstreamKey(config);
    let entry = this.clients.get(key);
    if (!entry) {
      const dispatcher = createUpstreamDispatcher(config);
      entry = { dispatcher, client: new UpstreamClient(config, dispatcher, this.observer) };
      this.clients.set(key, entry);
    }
    return entry.client;
  }

  async close(): Promise<void> {
    const all = [...this.clients.values()];
    this.clients.clear();
    await Promise.all(all.map((e) => e.dispatcher.close().catch(() => undefined)));
  }

  /** Like close(), but aborts running requests and downloads instead of waiting for them (shutdown after the grace period). */
  async destroy(): Promise<void> {
    const all = [...this.clients.values()];
    this.clients.clear();
    await Promise.all(all.map((e) => e.dispatcher.destroy().catch(() => undefined)));
  }
}
