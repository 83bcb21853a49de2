/** Runs one operation per key at a time; concurrent callers with the same key share its result. */
export class Coalescer<T> {
  private readonly running = new Map<string, Promise<T>>();

  run(key: string, operation: () => Promise<T>): Promise<T> {
    const existing = this.running.get(key);
    if (existing) return existing;
    const p = operation().finally(() => {
      if (this.running.get(key) === p) this.running.delete(key);
    });
    this.running.set(key, p);
    return p;
  }

  get size(): number {
    return this.running.size;
  }
}
