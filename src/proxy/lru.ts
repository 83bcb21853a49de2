/**
 * A small LRU bounded by total weight (bytes for manifests, 1 per entry for tag records). Entries sit
 * in a Map for lookup and in a doubly linked list for recency, oldest first: a hit moves its node to
 * the end by relinking it, without the delete and re-insert in the Map (whose holes make it rehash).
 * It has no dependencies, so upstream/ uses it too (agents and tokens of client-chosen upstreams).
 */
export interface LruOptions<V> {
  /** Told of each entry dropped for room or for idleness (not of delete() or of a replaced value). */
  onEvict?: (key: string, value: V) => void;
  /** Entries unused for this long are dropped, checked on every get() and set() (and by prune()). */
  idleMs?: number;
  now?: () => number;
}

interface Node<V> {
  key: string;
  value: V;
  weight: number;
  usedAt: number;
  older: Node<V> | undefined;
  newer: Node<V> | undefined;
}

export class Lru<V> {
  private readonly entries = new Map<string, Node<V>>();
  private oldest: Node<V> | undefined;
  private newest: Node<V> | undefined;
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
    if (this.options.idleMs !== undefined) e.usedAt = this.now();
    if (e !== this.newest) {
      this.unlink(e);
      this.append(e);
    }
    return e.value;
  }

  set(key: string, value: V): void {
    this.prune();
    const weight = this.weigh(value);
    if (weight > this.maxWeight) return;
    this.delete(key);
    const e: Node<V> = { key, value, weight, usedAt: this.now(), older: undefined, newer: undefined };
    this.entries.set(key, e);
    this.append(e);
    this.total += weight;
    while (this.total > this.maxWeight && this.oldest) this.evict(this.oldest.key);
  }

  delete(key: string): void {
    const e = this.entries.get(key);
    if (!e) return;
    this.entries.delete(key);
    this.unlink(e);
    this.total -= e.weight;
  }

  /** Drops the entries idle for longer than idleMs: the oldest first, so it stops at the first fresh one. */
  prune(): void {
    const idleMs = this.options.idleMs;
    if (idleMs === undefined) return;
    const cutoff = this.now() - idleMs;
    while (this.oldest && this.oldest.usedAt <= cutoff) this.evict(this.oldest.key);
  }

  /** How many entries are held. */
  get size(): number {
    return this.entries.size;
  }

  /** Removes every entry (without onEvict) and returns their values. */
  clear(): V[] {
    const values: V[] = [];
    for (let e = this.oldest; e; e = e.newer) values.push(e.value);
    this.entries.clear();
    this.oldest = this.newest = undefined;
    this.total = 0;
    return values;
  }

  private evict(key: string): void {
    const e = this.entries.get(key);
    if (!e) return;
    this.delete(key);
    this.options.onEvict?.(key, e.value);
  }

  private append(e: Node<V>): void {
    e.older = this.newest;
    e.newer = undefined;
    if (this.newest) this.newest.newer = e;
    else this.oldest = e;
    this.newest = e;
  }

  private unlink(e: Node<V>): void {
    if (e.older) e.older.newer = e.newer;
    else this.oldest = e.newer;
    if (e.newer) e.newer.older = e.older;
    else this.newest = e.older;
    e.older = e.newer = undefined;
  }
}
