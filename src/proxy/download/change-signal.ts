/**
 * Wakes whoever follows a changing thing (a download, a spool file). A set rather than an EventEmitter:
 * notify() runs once per received chunk, and an emitter copies its listener array on every emit.
 */
export class ChangeSignal {
  private readonly listeners = new Set<() => void>();

  /** Calls `listener` on every change until the returned function is called. */
  listen(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  notify(): void {
    for (const listener of this.listeners) listener();
  }

  /** Resolves at the next change. */
  next(): Promise<void> {
    return new Promise((resolve) => {
      const stop = this.listen(() => {
        stop();
        resolve();
      });
    });
  }
}
