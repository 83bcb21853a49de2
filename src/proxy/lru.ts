/**
 * A small LRU bounded by total weight (bytes for manifests, 1 per entry for tag records). Map keeps
 * insertion order, so re-inserting on access makes the first key the least recently used.
 * It has no dependencies, so upstream/ uses it too (agents and tokens of client-chosen upstreams).
 */
export interface LruOptions<V> {
  /** Told of each entry dropped for room or for idleness (not of delete() or of a replaced value). */
  onEvict?: (key: string, value: V) => void;
  /** Entries unused for this long are dropped, checked on every get() and set() (and by prune()). */
  idleMs?: number;
  now?: () => number;
}

export class Lru<V> {
  private readonly entries = new Map<string, { value: V; weight: number; usedAt: number }>();
  private total = 0;
  private readonly now: () => number;

  constructor(
    private readonly maxWeight: number,
    private readonly weigh: (value: V) => number = () => 1,
    private readonly options: LruOptions<V> = {},
  ) {
    this.now = options.now ?? Date.now;
  }

  get(key: string): V | undefined {
    this.prune();
    const e = this.entries.get(key);
    if (!e) return undefined;
    this.entries.delete(key);
    if (this.options.idleMs !== undefined) e.usedAt = this.now();
    this.entries.set(key, e);
    return e.value;
  }

  set(key: string, value: V): void {
    this.prune();
    const weight = this.weigh(value);
    if (weight > this.maxWeight) return;
    this.delete(key);
    this.entries.set(key, { value, weight, usedAt: this.now() });
    this.total += weight;
    while (this.total > this.maxWeight) {
      const oldest = this.entries.keys().next();
      if (oldest.done) break;
      this.evict(oldest.value);
    }
  }

  delete(key: string): void {
    const e = this.entries.get(key);
    if (!e) return;
    this.entries.delete(key);
    this.total -= e.weight;
  }

  /** Drops the entries idle for longer than idleMs: the oldest first, so it stops at the first fresh one. */
  prune(): void {
    const idleMs = this.options.idleMs;
    if (idleMs === undefined) return;
    const cutoff = this.now() - idleMs;
    for (const [key, e] of this.entries) {
      if (e.usedAt > cutoff) break;
      this.evict(key);
    }
  }

  /** How many entries are held. */
  get size(): number {
    return this.entries.size;
  }

  /** Removes every entry (without onEvict) and returns their values. */
  clear(): V[] {
    const values = [...this.entries.values()].map((e) => e.value);
    this.entries.clear();
    this.total = 0;
    return values;
  }

  private evict(key: string): void {
    const e = this.entries.get(key);
    if (!e) return;
    this.delete(key);
    this.options.onEvict?.(key, e.value);
  }
}
