import { createHash } from 'node:crypto';

/**
 * Rendezvous (highest-random-weight) hashing: every member scores every key, the highest score owns it.
 * A member leaving moves only its own keys (each to its runner-up); a member joining takes only the keys
 * it now scores highest on. Every replica that sees the same members picks the same owner, with no
 * coordination. The score is the first 48 bits of SHA-256(member, key): uniform, and the same on every
 * Node version and platform.
 */
export function rendezvousScore(member: string, key: string): number {
  return createHash('sha256').update(member).update('\0').update(key).digest().readUIntBE(0, 6);
}

/** The member that owns `key`, or undefined when there are none. Ties (never seen in practice) go to the smaller name. */
export function rendezvousOwner(key: string, members: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestScore = -1;
  for (const member of members) {
    const score = rendezvousScore(member, key);
    if (score > bestScore || (score === bestScore && best !== undefined && member < best)) {
      best = member;
      bestScore = score;
    }
  }
  return best;
}

/** Keys that route through the cluster: a blob (or a manifest by digest) by its digest, a tag by its full name. */
export const clusterKeys = {
  digest: (digest: string): string => digest,
  tag: (namespace: string, repository: string, tag: string): string => `${namespace}/${repository}:${tag}`,
} as const;
