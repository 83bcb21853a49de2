/**
 * Counts the responses in progress per client address (`--max-connections-per-client`). The map holds
 * only addresses with a response running (an entry goes at zero), so it is bounded by the open
 * connections, whatever addresses clients come from.
 */
export class ClientLimit {
  private readonly active = new Map<string, number>();

  constructor(readonly max: number) {}

  /** Counts one more response for `client`; undefined when it already has `max`. Call release once, when it ends. */
  acquire(client: string): (() => void) | undefined {
    const n = this.active.get(client) ?? 0;
    if (n >= this.max) return undefined;
    this.active.set(client, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.active.get(client) ?? 1) - 1;
      if (left <= 0) this.active.delete(client);
      else this.active.set(client, left);
    };
  }

  /** Addresses with responses running. */
  get clients(): number {
    return this.active.size;
  }

  count(client: string): number {
    return this.active.get(client) ?? 0;
  }
}
