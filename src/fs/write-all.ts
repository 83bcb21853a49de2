import type { FileHandle } from 'node:fs/promises';

/** Writes every chunk at `position` (pwritev), finishing any short write. */
export async function writeAllAt(fd: FileHandle, chunks: Buffer[], bytes: number, position: number): Promise<void> {
  let { bytesWritten: done } = await fd.writev(chunks, position);
  if (done === bytes) return;
  // A short write is rare (signals, quotas): finish it from a flat copy of what is left.
  const all = Buffer.concat(chunks, bytes);
  while (done < bytes) {
    const { bytesWritten } = await fd.write(all, done, bytes - done, position + done);
    done += bytesWritten;
  }
}
