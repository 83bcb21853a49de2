import { mkdir, open, rename, rm, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { tempPath } from '../../fs/temp-path.js';

/**
 * Moves a fully written, synced temp file into place: rename is the atomic point of visibility.
 * deleteTag removes directories that became empty; if that happens between mkdir and rename, the
 * directory is created again and the rename retried.
 */
export async function publish(temp: string, target: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await mkdir(dirname(target), { recursive: true });
      await rename(temp, target);
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= 5) throw e;
    }
  }
}

/** Writes small content atomically: temp file, fdatasync, rename. */
export async function writeFileAtomic(tmpDir: string, target: string, data: Buffer | string): Promise<void> {
  const temp = tempPath(tmpDir);
  let fh: FileHandle | undefined;
  try {
    fh = await open(temp, 'wx');
    await fh.writeFile(data);
    await fh.datasync();
    await fh.close();
    fh = undefined;
    await publish(temp, target);
  } catch (e) {
    await fh?.close().catch(() => undefined);
    await rm(temp, { force: true }).catch(() => undefined);
    throw e;
  }
}
