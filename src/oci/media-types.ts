export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const DOCKER_MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
export const DOCKER_MANIFEST_V1_SIGNED = 'application/vnd.docker.distribution.manifest.v1+prettyjws';
export const DOCKER_MANIFEST_V1 = 'application/vnd.docker.distribution.manifest.v1+json';
/** The config and layers of a Docker schema2 image (what `docker save` archives are rebuilt into). */
export const DOCKER_IMAGE_CONFIG = 'application/vnd.docker.container.image.v1+json';
export const DOCKER_LAYER = 'application/vnd.docker.image.rootfs.diff.tar';
export const DOCKER_LAYER_GZIP = 'application/vnd.docker.image.rootfs.diff.tar.gzip';

/** What we ask upstream for: every manifest type a client may want, so that one stored copy serves all clients. */
export const UPSTREAM_MANIFEST_ACCEPT = [
  OCI_INDEX,
  OCI_MANIFEST,
  DOCKER_MANIFEST_LIST,
  DOCKER_MANIFEST,
  `${DOCKER_MANIFEST_V1_SIGNED};q=0.5`,
  `${DOCKER_MANIFEST_V1};q=0.5`,
].join(', ');

export const INDEX_TYPES: ReadonlySet<string> = new Set([OCI_INDEX, DOCKER_MANIFEST_LIST]);

/** Strips parameters: `application/json; charset=utf-8` -> `application/json`. */
export function baseMediaType(contentType: string): string {
  return (contentType.split(';')[0] ?? '').trim().toLowerCase();
}

/**
 * Whether a stored manifest of `mediaType` may be served to a client that sent `accept` headers.
 * No Accept header (old clients) or a wildcard accepts anything; we never convert, as distribution does not.
 * Docker schema1 is served to clients that list no manifest types, which is what old clients expect.
 */
export function isAcceptable(mediaType: string, accept: readonly string[]): boolean {
  const entries = accept
    .flatMap((h) => h.split(','))
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (entries.length === 0) return true;
  const wanted = baseMediaType(mediaType);
  for (const entry of entries) {
    const [type, ...params] = entry.split(';').map((s) => s.trim());
    if (params.some((p) => /^q=0(?:\.0*)?$/.test(p))) continue;
    const t = (type ?? '').toLowerCase();
    if (t === '*/*' || t === wanted) return true;
    if (t.endsWith('/*') && wanted.startsWith(t.slice(0, -1))) return true;
  }
  return false;
}

/**
 * The media type of manifest bytes: the upstream's Content-Type when it names one, else the document's
 * own `mediaType` field, else OCI manifest/index by shape.
 */
export function detectManifestMediaType(contentType: string | undefined, bytes: Buffer): string {
  const fromHeader = contentType ? baseMediaType(contentType) : '';
  if (fromHeader && fromHeader !== 'application/json' && fromHeader !== 'application/octet-stream' && fromHeader !== 'text/plain') {
    return fromHeader;
  }
  try {
    const doc = JSON.parse(bytes.toString('utf8')) as {
      mediaType?: unknown;
      manifests?: unknown;
      schemaVersion?: unknown;
      signatures?: unknown;
    };
    if (typeof doc.mediaType === 'string' && doc.mediaType.length > 0) return doc.mediaType;
    if (doc.schemaVersion === 1) return doc.signatures ? DOCKER_MANIFEST_V1_SIGNED : DOCKER_MANIFEST_V1;
    if (Array.isArray(doc.manifests)) return OCI_INDEX;
  } catch {
    // Not JSON: fall through; the caller decides whether it is a manifest at all.
  }
  return fromHeader || OCI_MANIFEST;
}
