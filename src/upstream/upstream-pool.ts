import type { Agent } from 'undici';
import type { UpstreamConfig } from '../config/types.js';
import { createUpstreamDispatcher } from './dispatcher.js';
import { UpstreamClient, type UpstreamObserver } from './upstream-client.js';

/** One client (and one connection pool) per upstream, created on first use and kept. */
export class UpstreamPool {
  private readonly clients = new Map<string, { client: UpstreamClient; dispatcher: Agent }>();

  constructor(private readonly observer?: UpstreamObserver) {}

  client(config: UpstreamConfig): UpstreamClient {
    const key = `${config.namespace}\0${config.host}`;
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
