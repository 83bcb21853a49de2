import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const STALE_MS = 24 * 3600_000;

/**
 * A private directory for spool files (blobs streamed to clients while S3, or a failing disk, stores them).
 * One per process, so a sibling process's live spools are never touched; old ones left by crashes are swept.
 */
export async function createSpoolDir(parent: string = join(tmpdir(), 'oci-registry-spool')): Promise<string> {
  await mkdir(parent, { recursive: true });
  const now = Date.now();
  for (const entry of await readdir(parent).catch(() => [] as string[])) {
    const p = join(parent, entry);
    const s = await stat(p).catch(() => undefined);
    if (s && now - s.mtimeMs > STALE_MS) await rm(p, { recursive: true, force: true }).catch(() => undefined);
  }
  const dir = join(parent, `${process.pid}-${randomBytes(4).toString('hex')}`);
  await mkdir(dir, { recursive: true });
  return dir;
}
