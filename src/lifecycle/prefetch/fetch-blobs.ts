import { errorText } from '../../error-text.js';
import type { CacheOutcome } from '../../proxy/events.js';
import type { ResolvedRepository } from '../../resolve/resolver.js';
import type { PrefetchContext, PrefetchOptions, PrefetchProgress, PrefetchResult } from './prefetch.js';

const CACHED: ReadonlySet<CacheOutcome> = new Set<CacheOutcome>(['hit', 'revalidated', 'stale']);

/**
 * Fetches an image's blobs (digest -> descriptor size) through the mirror, `concurrency` at once,
 * reporting progress and counting into the result what was downloaded now. The first failure (or an
 * abort) stops the workers from starting more blobs and is thrown once the running ones end.
 */
export async function fetchBlobs(
  repo: ResolvedRepository,
  blobs: ReadonlyMap<string, number>,
  context: PrefetchContext,
  options: PrefetchOptions,
  result: PrefetchResult,
): Promise<void> {
  const progress: PrefetchProgress = { reference: result.reference, done: 0, total: result.bytes, blobsDone: 0, blobsTotal: blobs.size };
  options.onProgress?.({ ...progress });
  const queue = [...blobs.entries()];
  let failure: unknown;
  const worker = async (): Promise<void> => {
    for (;;) {
      if (failure !== undefined) return;
      if (options.signal?.aborted) {
        failure ??= new Error('aborted');
        return;
      }
      const next = queue.shift();
      if (!next) return;
      const [digest, size] = next;
      try {
        const fetched = await fetchBlob(repo, digest, size, context, (n) => {
          progress.done += n;
          options.onProgress?.({ ...progress });
        });
        if (fetched.downloaded) {
          result.fetchedBlobs++;
          result.fetchedBytes += fetched.bytes;
        } else {
          progress.done += size;
        }
        progress.blobsDone++;
        options.onProgress?.({ ...progress });
      } catch (e) {
        failure ??= new Error(`blob ${digest}: ${errorText(e)}`);
      }
    }
  };
  const n = Math.max(1, Math.min(options.concurrency ?? 4, queue.length || 1));
  await Promise.all(Array.from({ length: n }, worker));
  if (failure !== undefined) throw failure;
}

/** Opens the blob through the mirror; a cache miss is consumed so that the fill completes and stores it. */
async function fetchBlob(
  repo: ResolvedRepository,
  digest: string,
  descriptorSize: number,
  context: PrefetchContext,
  onBytes: (n: number) => void,
): Promise<{ downloaded: boolean; bytes: number }> {
  const { mirror } = context;
  // The manifest's descriptor says how big the blob is (0: it did not say): an upstream sending more is cut.
  const handle = await mirror.blobs.open(repo, digest, descriptorSize > 0 ? descriptorSize : undefined);
  if (CACHED.has(handle.outcome)) {
    handle.dispose();
    return { downloaded: false, bytes: 0 };
  }
  const stream = await handle.open();
  let bytes = 0;
  for await (const chunk of stream) {
    bytes += (chunk as Buffer).length;
    onBytes((chunk as Buffer).length);
  }
  // The fill verified the digest before the last byte and commits behind it; that may still fail (disk full, S3 down).
  await mirror.blobs.settled(digest);
  if (!(await mirror.options.storage.statBlob(digest))) throw new Error('downloaded but not stored (storage failure; see the log)');
  return { downloaded: true, bytes };
}
