import { OciError } from '../oci/errors.js';

export type V2Request =
  | { kind: 'base' }
  | { kind: 'manifests'; name: string; reference: string }
  | { kind: 'blobs'; name: string; digest: string }
  | { kind: 'tags'; name: string }
  | { kind: 'referrers'; name: string; digest: string };

/**
 * Splits `/v2/<name>/<endpoint>/<arg>` from the raw request path. Names, tags and digests never need
 * percent-encoding, so any `%` (an encoded slash, dot or NUL) is refused before anything looks at it.
 */
export function parseV2Path(rawPath: string): V2Request | undefined {
  if (rawPath === '/v2' || rawPath === '/v2/') return { kind: 'base' };
  if (!rawPath.startsWith('/v2/')) return undefined;
  const rest = rawPath.slice(4);
  if (rest.includes('%') || rest.includes('\\') || rest.includes('\0')) {
    throw new OciError('NAME_INVALID', 'encoded characters are not allowed in repository paths');
  }
  const parts = rest.split('/');
  const n = parts.length;
  if (n >= 3 && parts[n - 2] === 'tags' && parts[n - 1] === 'list') {
    return { kind: 'tags', name: parts.slice(0, n - 2).join('/') };
  }
  if (n >= 3) {
    const endpoint = parts[n - 2];
    const arg = parts[n - 1] as string;
    const name = parts.slice(0, n - 2).join('/');
    if (endpoint === 'manifests') return { kind: 'manifests', name, reference: arg };
    if (endpoint === 'blobs') return { kind: 'blobs', name, digest: arg };
    if (endpoint === 'referrers') return { kind: 'referrers', name, digest: arg };
  }
  return undefined;
}

/** Parsed paths kept: clients ask for the same few paths again and again. At the limit the map starts over. */
const parsedPaths = new Map<string, V2Request | undefined>();
const MAX_PARSED_PATHS = 4096;
/** Longer paths (client-chosen, up to the header limit) are parsed each time, never kept. */
const MAX_KEPT_PATH_LENGTH = 512;

/** parseV2Path, remembered; callers must not change the returned value (it is shared). */
export function parseV2PathCached(rawPath: string): V2Request | undefined {
  const kept = parsedPaths.get(rawPath);
  if (kept !== undefined) return kept;
  const parsed = parseV2Path(rawPath);
  if (parsed !== undefined && rawPath.length <= MAX_KEPT_PATH_LENGTH) {
    if (parsedPaths.size >= MAX_PARSED_PATHS) parsedPaths.clear();
    parsedPaths.set(rawPath, parsed);
  }
  return parsed;
}
