import { errorText } from '../../error-text.js';
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { parseDigest } from '../../oci/digest.js';
import { formatImageReference, parseImageList, parseImageReference } from '../../oci/image-reference.js';
import type { Reference } from '../../oci/names.js';
import type { Mirror } from '../../proxy/mirror.js';
import type { ResolvedRepository, Resolver } from '../../resolve/resolver.js';
import { formatPlatform, manifestRefs, selectChildren, type Platform } from '../manifest-refs.js';
import { fetchBlobs } from './fetch-blobs.js';

/**
 * Warms the cache with whole images, through exactly the code a client pull runs: the Resolver picks the
 * upstream, mirror.manifests.get() fetches (or revalidates) and stores each manifest, mirror.blobs.open()
 * joins or starts the verified fill of each blob. Whatever the mirror would serve after a pull, it
 * serves after a prefetch, including with the upstream gone.
 *
 * This file walks an image's manifests; fetch-blobs.ts then fetches its blobs. preload.ts runs a list of
 * images in the server's background (`--preload`), prefetch-summary.ts totals a run.
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

/** Reads an image list file: one reference per line, `#` comments. */
export async function readImageList(file: string): Promise<string[]> {
  return parseImageList(await readFile(file, 'utf8'));
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
    const reference: Reference =
      ref.digest !== undefined ? { kind: 'digest', digest: parseDigest(ref.digest) } : { kind: 'tag', tag: ref.tag ?? 'latest' };
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
    if (!(await storage.getManifest(digest)))
      throw new Error(`manifest ${digest} was served but not stored (storage failure; see the log)`);
  }

  await fetchBlobs(repo, blobs, context, options, result);
}
