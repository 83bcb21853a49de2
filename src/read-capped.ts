/**
 * Reads a small stream (a manifest, a token response, an archive's metadata file) into memory, refusing
 * to hold more than `limit` bytes: whoever sends it cannot make us buffer a blob. Above the limit the
 * stream is destroyed, so a network body stops arriving.
 */
export class TooLargeError extends Error {
  constructor(
    readonly what: string,
    readonly limit: number,
  ) {
    super(`${what} exceeds ${limit} bytes`);
    this.name = 'TooLargeError';
  }
}

export async function readCapped(
  stream: AsyncIterable<unknown> & { destroy?: () => unknown },
  limit: number,
  what: string,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
    size += b.length;
    if (size > limit) {
      stream.destroy?.();
      throw new TooLargeError(what, limit);
    }
    chunks.push(b);
  }
  return Buffer.concat(chunks, size);
}
