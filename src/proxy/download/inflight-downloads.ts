import type { UpstreamConfig } from '../../config/types.js';
import { upstreamKey } from '../../upstream/upstream-pool.js';
import type { BlobDownload } from './blob-download.js';

/**
 * The downloads in progress, by digest and then by upstream. A request joins only a download from its
 * own upstream: a slow or lying upstream of one namespace can neither hold nor cut another namespace's
 * clients. The collector asks by digest alone, since any upstream's download may be writing it.
 */
export class InflightDownloads {
  private readonly byDigest = new Map<string, Map<string, Promise<BlobDownload>>>();

  get(upstream: UpstreamConfig, digest: string): Promise<BlobDownload> | undefined {
    return this.byDigest.get(digest)?.get(upstreamKey(upstream));
  }

  set(upstream: UpstreamConfig, digest: string, download: Promise<BlobDownload>): void {
    let downloads = this.byDigest.get(digest);
    if (!downloads) this.byDigest.set(digest, (downloads = new Map()));
    downloads.set(upstreamKey(upstream), download);
  }

  /** Forgets the download if it is still `download` (a newer one may have replaced it). */
  delete(upstream: UpstreamConfig, digest: string, download: Promise<BlobDownload>): void {
    const downloads = this.byDigest.get(digest);
    const key = upstreamKey(upstream);
    if (downloads?.get(key) !== download) return;
    downloads.delete(key);
    if (downloads.size === 0) this.byDigest.delete(digest);
  }

  /** Whether any upstream's download of the digest is running. */
  has(digest: string): boolean {
    return this.byDigest.has(digest);
  }

  /** The running downloads of the digest, from every upstream. */
  of(digest: string): Promise<BlobDownload>[] {
    return [...(this.byDigest.get(digest)?.values() ?? [])];
  }

  all(): Promise<BlobDownload>[] {
    return [...this.byDigest.values()].flatMap((downloads) => [...downloads.values()]);
  }

  get size(): number {
    let n = 0;
    for (const downloads of this.byDigest.values()) n += downloads.size;
    return n;
  }
}
