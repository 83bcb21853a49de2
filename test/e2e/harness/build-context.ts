/**
 * A clean Docker build context: the repository's tracked files (`git ls-files`, as they are in the
 * working tree, so local edits to tracked files are built) copied to a temp dir. Untracked files,
 * node_modules, dist/ and the like never reach it; the copied .dockerignore is then applied by the
 * docker CLI as for any build.
 */
import { copyFile, lstat, mkdir, readlink, symlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { run } from './seed.js';
import { makeTempDir } from './util.js';

/** Copies the tracked files of `repoRoot` into a new temp dir and returns it. */
export async function trackedFilesCopy(repoRoot: string): Promise<{ dir: string; files: string[] }> {
  const { stdout } = await run('git', ['-C', repoRoot, 'ls-files', '-z', '--cached'], { timeoutMs: 60_000 });
  const listed = stdout.split('\0').filter(Boolean);
  const dir = await makeTempDir('build-context');
  const files: string[] = [];
  for (const rel of listed) {
    const from = join(repoRoot, rel);
    const st = await lstat(from).catch(() => undefined);
    // Deleted in the working tree, or a submodule (a directory): not part of the context.
    if (!st || st.isDirectory()) continue;
    const to = join(dir, rel);
    await mkdir(dirname(to), { recursive: true });
    if (st.isSymbolicLink()) await symlink(await readlink(from), to);
    else await copyFile(from, to);
    files.push(rel);
  }
  return { dir, files };
}
