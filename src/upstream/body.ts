import type { Readable } from 'node:stream';

/** Discards a body we do not need, so the connection returns to the pool. */
export async function discard(body: Readable & { dump?: () => Promise<void> }): Promise<void> {
  try {
    if (typeof body.dump === 'function') await body.dump();
    else body.resume();
  } catch {
    // The connection is dropped instead of reused; nothing to report.
  }
}
