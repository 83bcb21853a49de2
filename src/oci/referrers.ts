import { tryParseDigest, type Digest } from './digest.js';
import { OCI_INDEX } from './media-types.js';

/** One entry of a referrers index: a descriptor of a manifest whose `subject` is the digest asked for. */
export interface ReferrerDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  [field: string]: unknown;
}

/**
 * The referrers tag schema's tag for a subject (OCI distribution spec, "Referrers Tag Schema"):
 * `<alg>-<ref>`, the ref cut to 64 characters so that a sha512 tag stays a valid tag.
 */
export function referrersTag(subject: Digest): string {
  return `${subject.algorithm}-${subject.hex.slice(0, 64)}`;
}

/**
 * The `manifests` of an image index document, or undefined when the bytes are not one (not JSON, not
 * an object, no `manifests` array). Entries that are not usable descriptors (no media type, an invalid
 * digest, a size that is not a non-negative integer) are dropped: a client could not fetch them anyway.
 */
export function parseIndexManifests(bytes: Buffer): ReferrerDescriptor[] | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch {
    return undefined;
  }
  if (!isObject(doc) || !Array.isArray(doc['manifests'])) return undefined;
  return (doc['manifests'] as unknown[]).filter(isDescriptor);
}

/** Only the descriptors of that artifact type (the spec's `artifactType` filter). */
export function filterByArtifactType(manifests: readonly ReferrerDescriptor[], artifactType: string): ReferrerDescriptor[] {
  return manifests.filter((m) => m.artifactType === artifactType);
}

/** The referrers answer: always an OCI image index, schemaVersion 2, its own media type in the body. */
export function referrersIndex(manifests: readonly ReferrerDescriptor[]): Buffer {
  return Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests }));
}

function isDescriptor(v: unknown): v is ReferrerDescriptor {
  if (!isObject(v)) return false;
  const { mediaType, digest, size, artifactType } = v;
  return (
    typeof mediaType === 'string' &&
    mediaType.length > 0 &&
    typeof digest === 'string' &&
    tryParseDigest(digest) !== undefined &&
    typeof size === 'number' &&
    Number.isSafeInteger(size) &&
    size >= 0 &&
    (artifactType === undefined || typeof artifactType === 'string')
  );
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
