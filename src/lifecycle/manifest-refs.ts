import { tryParseDigest } from '../oci/digest.js';
import { INDEX_TYPES, baseMediaType } from '../oci/media-types.js';

/**
 * What a manifest points to, read from its JSON: the children of an index, or the blobs (config and
 * layers) of an image manifest. Shared by prefetch, import and export, which all walk image graphs.
 */

export interface Platform {
  os: string;
  architecture: string;
  variant?: string | undefined;
}

export interface Descriptor {
  mediaType: string | undefined;
  digest: string;
  /** Undefined only for Docker schema1 layers, which carry no size. */
  size: number | undefined;
  platform?: Platform | undefined;
  annotations?: Record<string, string> | undefined;
}

export type ManifestRefs =
  | { kind: 'index'; mediaType: string; children: Descriptor[] }
  | { kind: 'image'; mediaType: string; config: Descriptor | undefined; layers: Descriptor[] };

export class ManifestFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ManifestFormatError';
  }
}

/** Parses manifest bytes of the given media type; throws ManifestFormatError when they are not a manifest. */
export function manifestRefs(mediaType: string, bytes: Buffer): ManifestRefs {
  let doc: Record<string, unknown>;
  try {
    const parsed = JSON.parse(bytes.toString('utf8')) as unknown;
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
    doc = parsed as Record<string, unknown>;
  } catch {
    throw new ManifestFormatError('manifest is not a JSON object');
  }
  const type = baseMediaType(mediaType);
  if (INDEX_TYPES.has(type) || Array.isArray(doc['manifests'])) {
    const list = doc['manifests'];
    if (!Array.isArray(list)) throw new ManifestFormatError('index has no manifests list');
    return { kind: 'index', mediaType: type, children: list.map((d) => descriptor(d, 'manifests[]')) };
  }
  if (doc['schemaVersion'] === 1) {
    // Docker schema1: layers as fsLayers[].blobSum, no config, no sizes.
    const fs = Array.isArray(doc['fsLayers']) ? (doc['fsLayers'] as unknown[]) : [];
    const layers: Descriptor[] = [];
    const seen = new Set<string>();
    for (const l of fs) {
      const sum = (l as { blobSum?: unknown } | null)?.blobSum;
      if (typeof sum !== 'string' || !tryParseDigest(sum)) throw new ManifestFormatError('schema1 fsLayers entry without a valid blobSum');
      if (!seen.has(sum)) layers.push({ mediaType: undefined, digest: sum, size: undefined });
      seen.add(sum);
    }
    return { kind: 'image', mediaType: type, config: undefined, layers };
  }
  const config = doc['config'] === undefined ? undefined : descriptor(doc['config'], 'config');
  // OCI artifact manifests (1.1 draft) used `blobs`; image manifests use `layers`.
  const rawLayers = Array.isArray(doc['layers']) ? doc['layers'] : Array.isArray(doc['blobs']) ? doc['blobs'] : [];
  return { kind: 'image', mediaType: type, config, layers: (rawLayers as unknown[]).map((d) => descriptor(d, 'layers[]')) };
}

function descriptor(raw: unknown, where: string): Descriptor {
  if (typeof raw !== 'object' || raw === null) throw new ManifestFormatError(`${where}: descriptor is not an object`);
  const d = raw as Record<string, unknown>;
  const digest = d['digest'];
  if (typeof digest !== 'string' || !tryParseDigest(digest)) throw new ManifestFormatError(`${where}: invalid digest`);
  const size = d['size'];
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0)
    throw new ManifestFormatError(`${where}: invalid size for ${digest}`);
  const out: Descriptor = { mediaType: typeof d['mediaType'] === 'string' ? d['mediaType'] : undefined, digest, size };
  const p = d['platform'] as Record<string, unknown> | undefined;
  if (p && typeof p === 'object' && typeof p['os'] === 'string' && typeof p['architecture'] === 'string') {
    out.platform = { os: p['os'], architecture: p['architecture'], ...(typeof p['variant'] === 'string' ? { variant: p['variant'] } : {}) };
  }
  const a = d['annotations'];
  if (a && typeof a === 'object' && !Array.isArray(a)) {
    out.annotations = Object.fromEntries(
      Object.entries(a as Record<string, unknown>).filter((e): e is [string, string] => typeof e[1] === 'string'),
    );
  }
  return out;
}

/** `linux/amd64`, `linux/arm64/v8`. */
export function parsePlatform(text: string): Platform {
  const parts = text.trim().split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[a-z0-9_.-]+$/i.test(p))) {
    throw new ManifestFormatError(`invalid platform ${JSON.stringify(text)} (expected OS/ARCH[/VARIANT], e.g. linux/arm64)`);
  }
  return { os: parts[0] as string, architecture: parts[1] as string, ...(parts[2] !== undefined ? { variant: parts[2] } : {}) };
}

/** `linux/amd64,linux/arm64` -> platforms; empty entries ignored. */
export function parsePlatformList(text: string): Platform[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map(parsePlatform);
}

export function formatPlatform(p: Platform | undefined): string {
  if (!p) return 'unknown';
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;
}

/** Whether an index entry's platform is wanted: same OS and architecture, and the same variant when the filter names one. */
export function platformMatches(wanted: Platform, actual: Platform | undefined): boolean {
  if (!actual) return false;
  if (wanted.os.toLowerCase() !== actual.os.toLowerCase()) return false;
  if (normalizeArch(wanted.architecture) !== normalizeArch(actual.architecture)) return false;
  return wanted.variant === undefined || wanted.variant.toLowerCase() === (actual.variant ?? '').toLowerCase();
}

function normalizeArch(arch: string): string {
  const a = arch.toLowerCase();
  if (a === 'x86_64' || a === 'x86-64') return 'amd64';
  if (a === 'aarch64') return 'arm64';
  return a;
}

/** Docker BuildKit attaches provenance/SBOM as index entries of platform unknown/unknown that point to an image. */
export const ATTESTATION_REFERENCE = 'vnd.docker.reference.digest';

/**
 * The children of an index to fetch: every one without a filter; with one, the matching platforms plus
 * the attestation manifests that refer to them.
 */
export function selectChildren(children: readonly Descriptor[], platforms: readonly Platform[] | undefined): Descriptor[] {
  if (!platforms || platforms.length === 0) return [...children];
  const chosen = children.filter((c) => platforms.some((p) => platformMatches(p, c.platform)));
  const chosenDigests = new Set(chosen.map((c) => c.digest));
  const attestations = children.filter((c) => {
    const ref = c.annotations?.[ATTESTATION_REFERENCE];
    return ref !== undefined && chosenDigests.has(ref) && !chosenDigests.has(c.digest);
  });
  return [...chosen, ...attestations];
}
