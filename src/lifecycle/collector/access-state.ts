import type { Storage } from '../../storage/storage.js';

/**
 * Last-access times as stored: one state object per replica, `access/<replica-id>`, written only by
 * that replica (so no two writers ever race on one object), read by every collector, `ls` and `prune`.
 * The last access of a digest is the latest time any replica recorded for it.
 *
 *   {"version":1,"replica":"mirror-0","updatedAt":"2024-05-06T07:08:09.000Z","access":{"sha256:...":1714979289000}}
 *
 * Times are milliseconds since the epoch. Digests are of blobs and of manifests (the same namespace).
 */
export const ACCESS_PREFIX = 'access/';

export interface AccessDocument {
  replica: string;
  updatedAt: number;
  access: Map<string, number>;
}

export function accessStateName(replicaId: string): string {
  return `${ACCESS_PREFIX}${replicaId}`;
}

export function encodeAccess(replica: string, updatedAt: number, access: ReadonlyMap<string, number>): Buffer {
  return Buffer.from(
    JSON.stringify({ version: 1, replica, updatedAt: new Date(updatedAt).toISOString(), access: Object.fromEntries(access) }),
  );
}

/** Undefined for anything that is not an access document (a foreign or damaged object is ignored). */
export function decodeAccess(bytes: Buffer): AccessDocument | undefined {
  try {
    const doc = JSON.parse(bytes.toString('utf8')) as { version?: unknown; replica?: unknown; updatedAt?: unknown; access?: unknown };
    if (doc.version !== 1 || typeof doc.access !== 'object' || doc.access === null) return undefined;
    const access = new Map<string, number>();
    for (const [digest, time] of Object.entries(doc.access as Record<string, unknown>)) {
      if (typeof time === 'number' && Number.isFinite(time)) access.set(digest, time);
    }
    const updatedAt = typeof doc.updatedAt === 'string' ? Date.parse(doc.updatedAt) : NaN;
    return { replica: typeof doc.replica === 'string' ? doc.replica : '', updatedAt: Number.isNaN(updatedAt) ? 0 : updatedAt, access };
  } catch {
    return undefined;
  }
}

/** Keeps the later time for every digest of `from` in `into`. */
export function mergeAccess(into: Map<string, number>, from: ReadonlyMap<string, number>): void {
  for (const [digest, time] of from) {
    const known = into.get(digest);
    if (known === undefined || time > known) into.set(digest, time);
  }
}

export interface AccessSnapshot {
  /** Latest access per digest over every replica's object. */
  times: Map<string, number>;
  /** Each object read, by state name. */
  objects: Array<{ name: string; doc: AccessDocument }>;
}

/** Reads and merges every replica's access object. An object deleted meanwhile is skipped. */
export async function readAccessTimes(storage: Storage): Promise<AccessSnapshot> {
  const times = new Map<string, number>();
  const objects: AccessSnapshot['objects'] = [];
  for (const name of await storage.listState(ACCESS_PREFIX)) {
    const bytes = await storage.getState(name);
    const doc = bytes ? decodeAccess(bytes) : undefined;
    if (!doc) continue;
    objects.push({ name, doc });
    mergeAccess(times, doc.access);
  }
  return { times, objects };
}
