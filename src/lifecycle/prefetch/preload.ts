import { errorText } from '../../error-text.js';
import type { Logger } from 'pino';
import { prefetchImages, readImageList, type PrefetchContext, type PrefetchOptions, type PrefetchResult } from './prefetch.js';
import { summarize } from './prefetch-summary.js';

export interface Preload {
  /** Resolves when every image was tried (never rejects). */
  done: Promise<PrefetchResult[]>;
  /** Stops after the running image. */
  abort(): void;
}

/**
 * `--preload FILE` for the server: prefetches the file's images in the background with the server's own
 * mirror, logging one line per image and a summary. Never blocks serving and never throws.
 */
export function startPreload(
  file: string,
  context: PrefetchContext & { log: Logger },
  options: Omit<PrefetchOptions, 'signal' | 'onProgress'> = {},
): Preload {
  const controller = new AbortController();
  const { log } = context;
  const done = (async (): Promise<PrefetchResult[]> => {
    if (context.mirror.options.offline) {
      log.warn({ file }, 'preload: ignored, the mirror is offline');
      return [];
    }
    let images: string[];
    try {
      images = await readImageList(file);
    } catch (e) {
      log.error({ file, err: errorText(e) }, 'preload: cannot read the image list');
      return [];
    }
    log.info({ file, images: images.length }, 'preload: prefetching images in the background');
    try {
      const results = await prefetchImages(images, context, { ...options, signal: controller.signal }, (r) => {
        const fields = {
          image: r.reference,
          digest: r.digest,
          platforms: r.platforms.length > 0 ? r.platforms : undefined,
          blobs: r.blobs,
          bytes: r.bytes,
          fetchedBytes: r.fetchedBytes,
          ms: r.ms,
        };
        if (r.ok) log.info(fields, 'preload: image cached');
        else log.warn({ ...fields, err: r.error }, 'preload: image failed');
      });
      log.info({ file, ...summarize(results), aborted: controller.signal.aborted || undefined }, 'preload: done');
      return results;
    } catch (e) {
      log.error({ file, err: errorText(e) }, 'preload failed');
      return [];
    }
  })();
  return { done, abort: () => controller.abort() };
}
