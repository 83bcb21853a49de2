import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { parseDigest } from '../oci/digest.js';
import { formatImageReference, parseImageList, parseImageReference } from '../oci/image-reference.js';
import type { Reference } from '../oci/names.js';
import type { CacheOutcome } from '../proxy/events.js';
import type { Mirror } from '../proxy/mirror.js';
import type { ResolvedRepository, Resolver } from '../resolve/resolver.js';
import { formatPlatform, manifestRefs, selectChildren, type Platform } from './manifest-refs.js';
import { errorText } from '../error-text.js';

/**
 * Warms the cache with whole images, through exactly the code a client pull runs: the Resolver picks the
 * upstream, mirror.manifests.get() fetches (or revalidates) and stores each manifest, mirror.blobs.open()
 * joins or starts the verified fill of each blob. Whatever the mirror would serve after a pull, it
 * serves after a prefetch, including with the upstream gone.
 */

export interface PrefetchContext {
  mirror: Mirror;
  resolver: Resolver;
  log?: Logger | undefined;
}

export interface PrefetchOptions {
  /** Only these platforms of a multi-platform image (plus their attestations); default every one. */
  platforms?: readonly Platform[] | undefined;
  /** Blobs fetched at once per image. Default 4. */
  concurrency?: number | undefined;
  /** Stops starting new images and blobs (running downloads finish or fail on their own). */
  signal?: AbortSignal | undefined;
  /** Bytes done / total of the image being fetched; called often (throttle when rendering). */
  onProgress?: ((progress: PrefetchProgress) => void) | undefined;
}

export interface PrefetchProgress {
  reference: string;
  /** Bytes of blobs now in the cache (cached before, or fetched so far). */
  done: number;
  /** Sum of the blob sizes the manifests list (known once every manifest is fetched; 0 before). */
  total: number;
  blobsDone: number;
  blobsTotal: number;
}

export interface PrefetchResult {
  /** The reference as given. */
  input: string;
  /** Normalised: `docker.io/library/nginx:1.27`. Equal to the input when it did not parse. */
  reference: string;
  ok: boolean;
  error: string | undefined;
  /** Digest of the top manifest (index or image). */
  digest: string | undefined;
  /** Platforms of the index children fetched (empty for a single-platform image). */
  platforms: string[];
  manifests: number;
  blobs: number;
  /** Total size of the blobs. */
  bytes: number;
  /** Blobs (and their bytes) that were downloaded now; the rest were cached already. */
  fetchedBlobs: number;
  fetchedBytes: number;
  ms: number;
}

const MAX_INDEX_DEPTH = 4;
const CACHED: ReadonlySet<CacheOutcome> = new Set<CacheOutcome>(['hit', 'revalidated', 'stale']);

/** Prefetches the images one after another; a failed image does not stop the others. */
export async function prefetchImages(
  inputs: readonly string[],
  context: PrefetchContext,
  options: PrefetchOptions = {},
  onResult?: (result: PrefetchResult) => void,
): Promise<PrefetchResult[]> {
  const results: PrefetchResult[] = [];
  for (const input of inputs) {
    if (options.signal?.aborted) break;
    const result = await prefetchImage(input, context, options);
    results.push(result);
    onResult?.(result);
  }
  return results;
}

/** Fetches one image (every manifest and blob) into the cache; never throws, the result says what happened. */
export async function prefetchImage(input: string, context: PrefetchContext, options: PrefetchOptions = {}): Promise<PrefetchResult> {
  const started = Date.now();
  const result: PrefetchResult = {
    input,
    reference: input,
    ok: false,
    error: undefined,
    digest: undefined,
    platforms: [],
    manifests: 0,
    blobs: 0,
    bytes: 0,
    fetchedBlobs: 0,
    fetchedBytes: 0,
    ms: 0,
  };
  try {
    const ref = parseImageReference(input);
    result.reference = formatImageReference(ref);
    const repo = context.resolver.resolve({ name: ref.repository, ns: ref.namespace, registryHeader: undefined });
    const reference: Reference = ref.digest !== undefined ? { kind: 'digest', digest: parseDigest(ref.digest) } : { kind: 'tag', tag: ref.tag ?? 'latest' };
    await fetchImage(repo, reference, context, options, result);
    result.ok = true;
  } catch (e) {
    result.error = errorText(e);
  }
  result.ms = Date.now() - started;
  return result;
}

async function fetchImage(
  repo: ResolvedRepository,
  reference: Reference,
  context: PrefetchContext,
  options: PrefetchOptions,
  result: PrefetchResult,
): Promise<void> {
  const { mirror } = context;
  const storage = mirror.options.storage;
  const blobs = new Map<string, number>();
  const manifests = new Set<string>();

  const walk = async (ref: Reference, depth: number): Promise<string> => {
    const m = await mirror.manifests.get(repo, ref);
    manifests.add(m.digest);
    const refs = manifestRefs(m.mediaType, m.bytes);
    if (refs.kind === 'index') {
      if (depth >= MAX_INDEX_DEPTH) throw new Error(`indexes nested deeper than ${MAX_INDEX_DEPTH} levels`);
      const children = selectChildren(refs.children, options.platforms);
      if (children.length === 0) {
        const wanted = (options.platforms ?? []).map(formatPlatform).join(', ');
        const offered = refs.children.map((c) => formatPlatform(c.platform)).join(', ');
        throw new Error(`no manifest for ${wanted} in the index (it has ${offered || 'no entries'})`);
      }
      for (const child of children) {
        if (options.signal?.aborted) throw new Error('aborted');
        if (depth === 0 && child.platform && child.annotations?.['vnd.docker.reference.digest'] === undefined) {
          result.platforms.push(formatPlatform(child.platform));
        }
        await walk({ kind: 'digest', digest: parseDigest(child.digest) }, depth + 1);
      }
    } else {
      for (const d of [...(refs.config ? [refs.config] : []), ...refs.layers]) blobs.set(d.digest, d.size ?? 0);
    }
    return m.digest;
  };
  result.digest = await walk(reference, 0);
  result.manifests = manifests.size;
  result.blobs = blobs.size;
  result.bytes = [...blobs.values()].reduce((a, b) => a + b, 0);

  // The manifest service never fails a pull over a storage error, and stores behind its answers: wait for
  // the writes, then check that they really were stored.
  await context.mirror.manifests.drain();
  for (const digest of manifests) {
    if (!(await storage.getManifest(digest))) throw new Error(`manifest ${digest} was served but not stored (storage failure; see the log)`);
  }

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

export interface PrefetchSummary {
  images: number;
  ok: number;
  failed: number;
  bytes: number;
  fetchedBytes: number;
}

export function summarize(results: readonly PrefetchResult[]): PrefetchSummary {
  return {
    images: results.length,
    ok: results.filter((r) => r.ok).length,
    failed: results.filter((r) => !r.ok).length,
    bytes: results.reduce((a, r) => a + r.bytes, 0),
    fetchedBytes: results.reduce((a, r) => a + r.fetchedBytes, 0),
  };
}

/** Reads an image list file: one reference per line, `#` comments. */
export async function readImageList(file: string): Promise<string[]> {
  return parseImageList(await readFile(file, 'utf8'));
}

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
export function startPreload(file: string, context: PrefetchContext & { log: Logger }, options: Omit<PrefetchOptions, 'signal' | 'onProgress'> = {}): Preload {
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
        const fields = { image: r.reference, digest: r.digest, platforms: r.platforms.length > 0 ? r.platforms : undefined, blobs: r.blobs, bytes: r.bytes, fetchedBytes: r.fetchedBytes, ms: r.ms };
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
