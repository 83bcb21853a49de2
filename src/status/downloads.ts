import type { BlobDownload } from '../proxy/download/blob-download.js';
import type { DownloadsStatus } from './types.js';

/** Where the running downloads live (BlobService): each a promise that resolves once upstream answered. */
export interface DownloadRegistry {
  inflightDownloads(): Iterable<Promise<BlobDownload>>;
}

/**
 * Reads the running blob downloads without touching them: a download's promise is watched once (a
 * `then` that only notes the download), so a download still waiting for upstream is counted, not awaited.
 */
export class DownloadWatcher {
  private readonly watched = new WeakSet<Promise<BlobDownload>>();
  private readonly started = new WeakMap<Promise<BlobDownload>, BlobDownload>();

  constructor(private readonly registry: DownloadRegistry) {}

  async read(visible: (namespace: string) => Promise<boolean>): Promise<DownloadsStatus> {
    const pending = [...this.registry.inflightDownloads()];
    for (const p of pending) {
      if (this.watched.has(p)) continue;
      this.watched.add(p);
      p.then(
        (download) => this.started.set(p, download),
        () => undefined,
      );
    }
    // The watchers of downloads that have already started run before this continuation.
    await undefined;
    const running: DownloadsStatus['running'] = [];
    let waiting = 0;
    for (const p of pending) {
      const download = this.started.get(p);
      if (!download) {
        waiting++;
        continue;
      }
      if (!(await visible(download.namespace))) continue;
      running.push({
        namespace: download.namespace,
        digest: download.digest,
        receivedBytes: download.received,
        sizeBytes: download.size ?? null,
        clients: download.readers,
        state: download.failure ? 'failed' : download.verified ? 'storing' : 'downloading',
      });
    }
    running.sort((a, b) =>
      a.namespace < b.namespace ? -1 : a.namespace > b.namespace ? 1 : a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0,
    );
    return { running, waiting };
  }
}
