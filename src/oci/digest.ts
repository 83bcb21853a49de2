import { createHash, type Hash } from 'node:crypto';
import { OciError } from './errors.js';

export type DigestAlgorithm = 'sha256' | 'sha512';

export interface Digest {
  readonly algorithm: DigestAlgorithm;
  readonly hex: string;
  /** `algorithm:hex`, the canonical string. */
  readonly value: string;
}

const HEX_LENGTH: Record<DigestAlgorithm, number> = { sha256: 64, sha512: 128 };
const DIGEST = /^(sha256|sha512):([a-f0-9]+)$/;

/** Parses a digest string; returns undefined for anything that is not sha256/sha512 lowercase hex of the right length. */
export function tryParseDigest(input: string): Digest | undefined {
  const m = DIGEST.exec(input);
  if (!m) return undefined;
  const algorithm = m[1] as DigestAlgorithm;
  const hex = m[2] as string;
  if (hex.length !== HEX_LENGTH[algorithm]) return undefined;
  return { algorithm, hex, value: input };
}

export function parseDigest(input: string): Digest {
  const d = tryParseDigest(input);
  if (!d) throw new OciError('DIGEST_INVALID', 'invalid digest', { detail: { digest: input.slice(0, 200) } });
  return d;
}

export function looksLikeDigest(input: string): boolean {
  return /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:/.test(input);
}

export function createDigester(algorithm: DigestAlgorithm): Hash {
  return createHash(algorithm);
}

export function digestOf(bytes: Uint8Array, algorithm: DigestAlgorithm = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
}
