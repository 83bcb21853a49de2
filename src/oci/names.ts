import { OciError } from './errors.js';
import { looksLikeDigest, tryParseDigest, type Digest } from './digest.js';

// Grammars from the OCI distribution spec.
const COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
const NAME = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`);
const TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
/** Distribution caps a repository name at 255 characters. */
export const MAX_NAME_LENGTH = 255;

export function isValidRepositoryName(name: string): boolean {
  return name.length > 0 && name.length <= MAX_NAME_LENGTH && NAME.test(name);
}

export function isValidTag(tag: string): boolean {
  return TAG.test(tag);
}

export type Reference = { kind: 'tag'; tag: string } | { kind: 'digest'; digest: Digest };

/** A manifest reference: a tag or a digest. Invalid references are MANIFEST_UNKNOWN (404), as the conformance suite expects. */
export function parseReference(input: string): Reference {
  if (isValidTag(input)) return { kind: 'tag', tag: input };
  if (looksLikeDigest(input)) {
    const digest = tryParseDigest(input);
    if (digest) return { kind: 'digest', digest };
    throw new OciError('DIGEST_INVALID', 'invalid digest', { detail: { reference: input.slice(0, 200) } });
  }
  throw new OciError('MANIFEST_UNKNOWN', 'invalid manifest reference', { detail: { reference: input.slice(0, 200) } });
}

export function referenceString(ref: Reference): string {
  return ref.kind === 'tag' ? ref.tag : ref.digest.value;
}
