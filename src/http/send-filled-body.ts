import type { FastifyReply } from 'fastify';
import type { Readable } from 'node:stream';
import type { BufferFiller } from '../storage/storage.js';

const DEFAULT_BUFFER_SIZE = 512 * 1024;
/** One buffer is being filled while the other is written: reads and socket writes overlap. */
const BUFFERS_PER_TRANSFER = 2;
/** Free buffers kept for the next transfers; more are left to the garbage collector. */
const POOL_LIMIT_BYTES = 8 * 1024 * 1024;

/** Free buffers by size (a few sizes: cached files use one, downloads size theirs by their reader count). */
const pool = new Map<number, Buffer[]>();
let pooledBytes = 0;

function take(size: number): Buffer {
  const buffer = pool.get(size)?.pop();
  if (!buffer) return Buffer.allocUnsafeSlow(size);
  pooledBytes -= size;
  return buffer;
}

function giveBack(buffer: Buffer): void {
  if (pooledBytes + buffer.length > POOL_LIMIT_BYTES) return;
  let list = pool.get(buffer.length);
  if (!list) pool.set(buffer.length, (list = []));
  list.push(buffer);
  pooledBytes += buffer.length;
}

/**
 * Sends a body that fills our buffers (a cached blob file, a download in progress) with two pooled
 * buffers for the whole transfer. Node has no sendfile; a stream allocating 512 KiB per read made the
 * allocator churn and halved warm throughput in half the runs. A buffer goes back to the pool only when
 * the socket write that used it has completed, so the kernel has copied it. The headers set on `reply`
 * are sent as they are, once the first bytes are in hand: a body that fails before that (a download
 * whose upstream broke) throws, and the client gets an error status rather than a cut response.
 */
export async function sendFilledBody(reply: FastifyReply, body: Readable & BufferFiller): Promise<FastifyReply> {
  const size = body.bufferSize ?? DEFAULT_BUFFER_SIZE;
  const free: Buffer[] = [];
  for (let i = 0; i < BUFFERS_PER_TRANSFER; i++) free.push(take(size));
  const first = free.pop()!;
  // A client that leaves while the first bytes are awaited (a download still starting) ends the wait.
  const leftEarly = () => body.destroy();
  reply.raw.once('close', leftEarly);
  let firstBytes: number;
  try {
    firstBytes = await body.fill(first);
  } catch (e) {
    body.destroy();
    free.push(first);
    free.forEach(giveBack);
    throw e;
  } finally {
    reply.raw.off('close', leftEarly);
  }

  reply.hijack();
  const res = reply.raw;
  for (const [name, value] of Object.entries(reply.getHeaders())) if (value !== undefined) res.setHeader(name, value);
  res.writeHead(reply.statusCode);
  let writing = 0;
  let reading = false;
  let ended = false;
  let stopped = false;

  const stop = (error?: Error) => {
    if (stopped) return;
    stopped = true;
    body.destroy();
    // Buffers still held by a pending write are left to the garbage collector, never reused.
    free.forEach(giveBack);
    if (error) {
      reply.log.warn({ err: error.message }, 'blob body failed mid-transfer; connection cut');
      res.destroy(error);
    }
  };

  const send = (buffer: Buffer, n: number) => {
    writing++;
    res.write(n === buffer.length ? buffer : buffer.subarray(0, n), (err) => {
      writing--;
      if (err) return stop();
      free.push(buffer);
      pump();
    });
  };

  const pump = () => {
    if (stopped) return;
    if (ended) {
      if (writing === 0) {
        stop();
        res.end();
      }
      return;
    }
    if (reading || free.length === 0) return;
    const buffer = free.pop()!;
    reading = true;
    body.fill(buffer).then(
      (n) => {
        reading = false;
        if (stopped) return giveBack(buffer);
        if (n === 0) {
          ended = true;
          free.push(buffer);
        } else send(buffer, n);
        pump();
      },
      (e: Error) => {
        reading = false;
        stop(e);
      },
    );
  };

  res.once('close', () => {
    if (!res.writableFinished) stop();
  });
  if (res.destroyed) stop();
  if (firstBytes === 0) {
    ended = true;
    free.push(first);
  } else send(first, firstBytes);
  pump();
  return reply;
}
