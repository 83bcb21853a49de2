import { randomBytes } from 'node:crypto';
import { join } from 'node:path';

/** A unique temp path in `tmpDir`; the sweep at start removes whatever a crash left there. */
export function tempPath(tmpDir: string): string {
  return join(tmpDir, `${Date.now().toString(36)}-${process.pid}-${randomBytes(6).toString('hex')}.part`);
}
