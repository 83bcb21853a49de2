import type { UpstreamConfig } from '../config/types.js';
import { upstreamKey } from '../upstream/upstream-pool.js';
import type { BlobFill } from './blob-fill.js';

/**
 * The downloads in progress, by digest and then by upstream. A request joins only a download from its
 * own upstream: a slow or lying upstream of one namespace can neither hold nor cut another namespace's
 * clients. The collector asks by digest alone, since any upstream's download may be writing it.
 */
export class InflightFills {
  private readonly byDigest = new Map<string, Map<string, Promise<BlobFill>>>();

  get(upstream: UpstreamConfig, digest: string): Promise<BlobFill> | undefined {
    return this.byDigest.get(digest)?.get(upstreamKey(upstream));
  }

  set(upstream: UpstreamConfig, digest: string, fill: Promise<BlobFill>): void {
    let fills = this.byDigest.get(digest);
    if (!fills) this.byDigest.set(digest, (fills = new Map()));
    fills.set(upstreamKey(upstream), fill);
  }

  /** Forgets the download if it is still `fill` (a newer one may have replaced it). */
  delete(upstream: UpstreamConfig, digest: string, fill: Promise<BlobFill>): void {
    const fills = this.byDigest.get(digest);
    const key = upstreamKey(upstream);
    if (fills?.get(key) !== fill) return;
    fills.delete(key);
    if (fills.size === 0) this.byDigest.delete(digest);
  }

  /** Whether any upstream's download of the digest is running. */
  has(digest: string): boolean {
    return this.byDigest.has(digest);
  }

  /** The running downloads of the digest, from every upstream. */
  of(digest: string): Promise<BlobFill>[] {
    return [...(this.byDigest.get(digest)?.values() ?? [])];
  }

  all(): Promise<BlobFill>[] {
    return [...this.byDigest.values()].flatMap((fills) => [...fills.values()]);
  }

  get size(): number {
    let n = 0;
    for (const fills of this.byDigest.values()) n += fills.size;
    return n;
  }
}
