import type { Readable } from 'node:stream';
import { OciError } from '../oci/errors.js';

/** Reads a small body (manifest, token, tag list) with a hard size cap: upstream cannot make us buffer a blob. */
export async function readLimited(body: Readable, limit: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const b = chunk as Buffer;
    size += b.length;
    if (size > limit) {
      body.destroy();
      throw new OciError('UPSTREAM_ERROR', `upstream ${what} exceeds ${limit} bytes`);
    }
    chunks.push(b);
  }
  return Buffer.concat(chunks, size);
}

/** Discards a body we do not need, so the connection returns to the pool. */
export async function discard(body: Readable & { dump?: () => Promise<void> }): Promise<void> {
  try {
    if (typeof body.dump === 'function') await body.dump();
    else body.resume();
  } catch {
    // The connection is dropped instead of reused; nothing to report.
  }
}
