/** A bounded set of keys that expire: the least recently added go first when it is full. */
export class TtlLru {
  private readonly until = new Map<string, number>();

  constructor(
    private readonly max: number,
    private readonly now: () => number = Date.now,
  ) {}

  has(key: string): boolean {
    const until = this.until.get(key);
    if (until === undefined) return false;
    if (until > this.now()) return true;
    this.until.delete(key);
    return false;
  }

  set(key: string, ttlMs: number): void {
    this.until.delete(key);
    this.until.set(key, this.now() + ttlMs);
    while (this.until.size > this.max) {
      const oldest = this.until.keys().next();
      if (oldest.done) break;
      this.until.delete(oldest.value);
    }
  }

  get size(): number {
    return this.until.size;
  }
}
