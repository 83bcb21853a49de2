import {
  baseMediaType,
  DOCKER_MANIFEST,
  DOCKER_MANIFEST_LIST,
  DOCKER_MANIFEST_V1,
  DOCKER_MANIFEST_V1_SIGNED,
  OCI_INDEX,
  OCI_MANIFEST,
} from '../oci/media-types.js';

/** The manifest types we ask upstreams for (UPSTREAM_MANIFEST_ACCEPT), and so the only ones we store. */
const MANIFEST_TYPES: ReadonlySet<string> = new Set([
  OCI_MANIFEST,
  OCI_INDEX,
  DOCKER_MANIFEST,
  DOCKER_MANIFEST_LIST,
  DOCKER_MANIFEST_V1_SIGNED,
  DOCKER_MANIFEST_V1,
]);

/**
 * Content types that say nothing about the document: old registries (Docker schema1 era, some static or
 * S3-backed ones) send these or none. The document's own fields decide then.
 */
const GENERIC_TYPES: ReadonlySet<string> = new Set(['', 'application/json', 'text/plain', 'application/octet-stream']);

export type ManifestTypeResult = { mediaType: string } | { problem: string };

/**
 * The media type of manifest bytes from an upstream, or why they are not a manifest. A manifest type in
 * Content-Type is taken as is; a generic or missing one defers to the body (its mediaType field, schema1's
 * schemaVersion 1, or OCI's shape with manifests / config+layers); any other type (text/html from a login
 * page or a proxy) is refused. Whatever the type, the body must be a JSON object.
 */
export function upstreamManifestType(contentType: string | undefined, bytes: Buffer): ManifestTypeResult {
  const fromHeader = baseMediaType(contentType ?? '');
  if (!MANIFEST_TYPES.has(fromHeader) && !GENERIC_TYPES.has(fromHeader)) {
    return { problem: `upstream sent Content-Type ${JSON.stringify(fromHeader.slice(0, 100))}, not a manifest media type` };
  }
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch {
    return { problem: 'upstream manifest is not valid JSON' };
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return { problem: 'upstream manifest is not a JSON object' };
  if (MANIFEST_TYPES.has(fromHeader)) return { mediaType: fromHeader };
  const m = doc as {
    mediaType?: unknown;
    schemaVersion?: unknown;
    signatures?: unknown;
    manifests?: unknown;
    config?: unknown;
    layers?: unknown;
  };
  if (m.mediaType !== undefined) {
    return typeof m.mediaType === 'string' && MANIFEST_TYPES.has(m.mediaType)
      ? { mediaType: m.mediaType }
      : { problem: 'upstream manifest names no manifest media type' };
  }
  if (m.schemaVersion === 1) return { mediaType: Array.isArray(m.signatures) ? DOCKER_MANIFEST_V1_SIGNED : DOCKER_MANIFEST_V1 };
  if (m.schemaVersion === 2 && Array.isArray(m.manifests)) return { mediaType: OCI_INDEX };
  if (m.schemaVersion === 2 && typeof m.config === 'object' && m.config !== null && Array.isArray(m.layers))
    return { mediaType: OCI_MANIFEST };
  return { problem: 'upstream manifest has no media type and is neither an image manifest nor an index' };
}
