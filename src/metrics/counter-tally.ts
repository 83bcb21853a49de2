import type { Counter } from 'prom-client';

interface Series {
  values: [string, string, string];
  n: number;
}

/**
 * Increments of one prom-client Counter with up to three labels, summed per label set in plain numbers
 * and added to the counter when it is read (prom-client runs a metric's `collect` before every read).
 * A label set is found through nested maps of its values: counting a request builds no label object
 * or hash string and validates nothing. Label sets are as bounded as the counter's own series.
 */
export class CounterTally<L extends string> {
  private readonly root = new Map<string, Map<string, Map<string, Series>>>();
  private readonly series: Series[] = [];

  constructor(private readonly labelNames: readonly L[]) {}

  /** Adds `n` to the series of these label values (in labelNames order; unused trailing ones ''). */
  inc(n: number, a: string, b = '', c = ''): void {
    let byB = this.root.get(a);
    if (byB === undefined) this.root.set(a, (byB = new Map()));
    let byC = byB.get(b);
    if (byC === undefined) byB.set(b, (byC = new Map()));
    let s = byC.get(c);
    if (s === undefined) {
      s = { values: [a, b, c], n: 0 };
      byC.set(c, s);
      this.series.push(s);
    }
    s.n += n;
  }

  /** Moves what was counted since the last read into `counter` (its collect). */
  flush(counter: Counter<L>): void {
    for (const s of this.series) {
      if (s.n === 0) continue;
      const labels: Partial<Record<L, string>> = {};
      this.labelNames.forEach((name, i) => {
        labels[name] = s.values[i];
      });
      counter.inc(labels, s.n);
      s.n = 0;
    }
  }
}
