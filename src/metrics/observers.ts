import type { ProxyObserver } from '../proxy/events.js';
import type { UpstreamObserver } from '../upstream/upstream-client.js';

export type MirrorObserver = ProxyObserver & UpstreamObserver;

/** One observer that forwards every event to each of `observers` (metrics plus a test's own, say). */
export function combineObservers(...observers: MirrorObserver[]): MirrorObserver {
  if (observers.length === 1) return observers[0] as MirrorObserver;
  return {
    downloadStarted: (...a) => observers.forEach((o) => o.downloadStarted?.(...a)),
    downloadFinished: (...a) => observers.forEach((o) => o.downloadFinished?.(...a)),
    storageError: (...a) => observers.forEach((o) => o.storageError?.(...a)),
    corruptBlobDropped: () => observers.forEach((o) => o.corruptBlobDropped?.()),
    onResponse: (...a) => observers.forEach((o) => o.onResponse(...a)),
    onError: (...a) => observers.forEach((o) => o.onError(...a)),
    onFailover: (...a) => observers.forEach((o) => o.onFailover?.(...a)),
  };
}
