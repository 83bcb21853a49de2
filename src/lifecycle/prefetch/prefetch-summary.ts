import type { PrefetchResult } from './prefetch.js';

export interface PrefetchSummary {
  images: number;
  ok: number;
  failed: number;
  bytes: number;
  fetchedBytes: number;
}

/** Totals over a prefetch run, for the CLI's last line and the server's preload log. */
export function summarize(results: readonly PrefetchResult[]): PrefetchSummary {
  return {
    images: results.length,
    ok: results.filter((r) => r.ok).length,
    failed: results.filter((r) => !r.ok).length,
    bytes: results.reduce((a, r) => a + r.bytes, 0),
    fetchedBytes: results.reduce((a, r) => a + r.fetchedBytes, 0),
  };
}
