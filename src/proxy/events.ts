/**
 * What the cache policy reports as it works: metrics subscribe here, so proxy/ does not know Prometheus.
 * Every method is optional; an absent observer costs nothing on the hot path.
 */
export type EntryKind = 'manifest' | 'blob' | 'tags' | 'referrers';
/** `peer`: answered by the replica that owns the digest or tag (--peers); nothing was cached here. */
export type CacheOutcome = 'hit' | 'miss' | 'stale' | 'coalesced' | 'revalidated' | 'bypass' | 'peer';

export interface ProxyObserver {
  downloadStarted?(namespace: string): void;
  downloadFinished?(namespace: string, result: 'stored' | 'uncached' | 'failed' | 'digest_mismatch'): void;
  storageError?(operation: string): void;
  corruptBlobDropped?(): void;
}

/**
 * Told of every blob and manifest served, by digest (the cache lifecycle's access tracker). Called on
 * the request path: must be cheap and must not throw.
 */
export interface AccessRecorder {
  record(digest: string): void;
}
