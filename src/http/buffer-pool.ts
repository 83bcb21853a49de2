/**
 * Send buffers shared by every response: free buffers by size (a few sizes: cached files use one,
 * downloads size theirs by their reader count), and a process-wide budget for the large ones.
 */

/** Free buffers kept for the next transfers; more are left to the garbage collector. */
const POOL_LIMIT_BYTES = 8 * 1024 * 1024;
/**
 * Large buffers lent to fast responses at once (each holds at most two). A client that read quickly and
 * then stopped can keep one large buffer in a write the kernel has not taken; this caps what any number
 * of such clients hold together. Past it responses send with small buffers: slower, never refused.
 */
const LARGE_BUDGET_BYTES = 32 * 1024 * 1024;

const pool = new Map<number, Buffer[]>();
let pooledBytes = 0;
let lentLargeBytes = 0;

export function takeBuffer(size: number): Buffer {
  const buffer = pool.get(size)?.pop();
  if (!buffer) return Buffer.allocUnsafeSlow(size);
  pooledBytes -= size;
  return buffer;
}

/** Only for a buffer no pending write still references: the next taker overwrites it. */
export function giveBackBuffer(buffer: Buffer): void {
  if (pooledBytes + buffer.length > POOL_LIMIT_BYTES) return;
  let list = pool.get(buffer.length);
  if (!list) pool.set(buffer.length, (list = []));
  list.push(buffer);
  pooledBytes += buffer.length;
}

/** Reserves `bytes` of the large-buffer budget; false when it is spent. */
export function reserveLarge(bytes: number): boolean {
  if (lentLargeBytes + bytes > LARGE_BUDGET_BYTES) return false;
  lentLargeBytes += bytes;
  return true;
}

export function releaseLarge(bytes: number): void {
  lentLargeBytes = Math.max(0, lentLargeBytes - bytes);
}

/** For tests and metrics: the large-buffer budget in use. */
export function largeBytesLent(): number {
  return lentLargeBytes;
}
