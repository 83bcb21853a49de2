import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Where entries whose digest is not in their name are hashed to disk before they go into storage: the
 * directory given, or a temp directory made on first use and removed by cleanup().
 */
export class ImportSpool {
  private dir: string | undefined;
  private own = false;

  constructor(private readonly given: string | undefined) {}

  /** A fresh file name in the spool directory. */
  async newFile(): Promise<string> {
    return join(await this.directory(), `${randomBytes(8).toString('hex')}.part`);
  }

  async cleanup(): Promise<void> {
    if (this.own && this.dir) await rm(this.dir, { recursive: true, force: true }).catch(() => undefined);
  }

  private async directory(): Promise<string> {
    if (!this.dir) {
      if (this.given) {
        this.dir = this.given;
      } else {
        this.dir = await mkdtemp(join(tmpdir(), 'oci-registry-import-'));
        this.own = true;
      }
    }
    return this.dir;
  }
}
