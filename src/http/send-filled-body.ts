import type { FastifyBaseLogger, FastifyReply } from 'fastify';
import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { BufferFiller } from '../storage/storage.js';
import { giveBackBuffer, releaseLarge, reserveLarge, takeBuffer } from './buffer-pool.js';

/** What a body reads best with when it does not say (cached files): reads are thread-pool round trips. */
const DEFAULT_LARGE_SIZE = 512 * 1024;
/** Every response starts with these, and a client that stops reading holds one of them at most. */
export const SMALL_BUFFER_SIZE = 64 * 1024;
/**
 * Bytes the socket must take, with no write stalling, before the response moves to large buffers. Above
 * what the kernel's socket buffers absorb for a client that never reads (about 4 MiB with Linux's default
 * tcp_wmem), so such a client never gets one; small writes cost about 40% more CPU per byte, so a fast
 * client should not stay on them for long either.
 */
export const RAMP_BYTES = 8 * 1024 * 1024;
/**
 * A write the kernel has not taken after this is a stall: the client is not reading (for now). Long
 * enough that a fast client descheduled for a moment (two busy cores) does not lose its large buffers.
 */
const STALL_MS = 250;

/**
 * Sends a body that fills our buffers (a cached blob file, a download in progress) from the shared pool
 * (buffer-pool.ts). Node has no sendfile; a stream allocating 512 KiB per read made the allocator churn
 * and halved warm throughput in half the runs. One buffer is in a socket write while the next is filled,
 * so reads and writes overlap; a buffer goes back to the pool only when its write completed (the kernel
 * copied it). The headers set on `reply` are sent as they are once the first bytes are in hand: a body
 * that fails before that (a download whose upstream broke) throws, and the client gets an error status
 * rather than a cut response.
 *
 * Memory per client: a write the kernel cannot take keeps its buffer until the client reads, so the buffer
 * size follows the client. A response starts with 64 KiB buffers and moves to large ones (512 KiB, or the
 * body's size) after RAMP_BYTES taken without a stall, within a process-wide budget. When a write stalls,
 * the buffer already filled behind it is given back to the body (rewind) and to the pool, and the response
 * drops to small buffers again: a client that stops reading holds only the buffer of its last write.
 */
export async function sendFilledBody(reply: FastifyReply, body: Readable & BufferFiller): Promise<FastifyReply> {
  const largeSize = body.bufferSize ?? DEFAULT_LARGE_SIZE;
  const smallSize = Math.min(SMALL_BUFFER_SIZE, largeSize);
  const first = takeBuffer(smallSize);
  // A client that leaves while the first bytes are awaited (a download still starting) ends the wait.
  const leftEarly = () => body.destroy();
  reply.raw.once('close', leftEarly);
  let firstBytes: number;
  try {
    firstBytes = await body.fill(first);
  } catch (e) {
    body.destroy();
    giveBackBuffer(first);
    throw e;
  } finally {
    reply.raw.off('close', leftEarly);
  }

  reply.hijack();
  const res = reply.raw;
  for (const [name, value] of Object.entries(reply.getHeaders())) if (value !== undefined) res.setHeader(name, value);
  res.writeHead(reply.statusCode);
  new Transfer(res, body, reply.log, smallSize, largeSize).start(first, firstBytes);
  return reply;
}

/** One response body on its way out; see sendFilledBody. */
class Transfer {
  /** The buffer in the socket write (one at a time, so a stalled client holds one). */
  private pending: Buffer | undefined;
  private pendingSince = 0;
  /** The pending write outlived STALL_MS. */
  private stalled = false;
  /** Filled, waiting for the pending write to complete. */
  private ready: { buffer: Buffer; n: number } | undefined;
  private filling = false;
  private ended = false;
  private stopped = false;
  /** Bytes the socket took since the start or the last stall. */
  private rampBytes = 0;
  /** This response holds a share of the large-buffer budget (two large buffers). */
  private largeSlot = false;
  private largeOut = 0;
  /** Armed (refreshed) by each write; made on the first. */
  private stallTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly res: ServerResponse,
    private readonly body: Readable & BufferFiller,
    private readonly log: FastifyBaseLogger,
    private readonly smallSize: number,
    private readonly largeSize: number,
  ) {}

  start(first: Buffer, firstBytes: number): void {
    this.res.once('close', () => {
      if (!this.res.writableFinished) this.stop();
    });
    if (this.res.destroyed) {
      this.giveBack(first);
      this.stop();
      return;
    }
    if (firstBytes === 0) {
      this.ended = true;
      this.giveBack(first);
    } else this.send(first, firstBytes);
    this.pump();
  }

  private pump(): void {
    if (this.stopped) return;
    if (!this.pending && this.ready) {
      const { buffer, n } = this.ready;
      this.ready = undefined;
      this.send(buffer, n);
    }
    if (!this.pending && !this.ready && !this.filling && this.ended) {
      this.stop();
      this.res.end();
      return;
    }
    if (!this.filling && !this.ready && !this.ended && !this.stalled) this.fill();
  }

  private send(buffer: Buffer, n: number): void {
    this.pending = buffer;
    this.pendingSince = performance.now();
    if (this.stallTimer) this.stallTimer.refresh();
    else this.stallTimer = setTimeout(() => this.checkStall(), STALL_MS).unref();
    this.res.write(n === buffer.length ? buffer : buffer.subarray(0, n), (err) => {
      const wasStalled = this.stalled;
      this.pending = undefined;
      this.stalled = false;
      if (wasStalled) this.rampBytes = 0;
      else this.rampBytes += n;
      // A failed write (the socket went) leaves its buffer to the garbage collector, never reused.
      this.giveBack(buffer, !err);
      if (err) return this.stop();
      this.pump();
    });
  }

  private fill(): void {
    const buffer = this.take();
    this.filling = true;
    this.body.fill(buffer).then(
      (n) => {
        this.filling = false;
        if (this.stopped) return this.giveBack(buffer);
        if (n === 0) {
          this.ended = true;
          this.giveBack(buffer);
        } else if (this.stalled && this.body.rewind) {
          this.body.rewind(n);
          this.giveBack(buffer);
        } else this.ready = { buffer, n };
        this.pump();
      },
      (e: Error) => {
        this.filling = false;
        this.giveBack(buffer);
        this.stop(e);
      },
    );
  }

  /**
   * The timer fired STALL_MS after the last write began. Timers run before the loop polls for I/O, so a
   * write that completed meanwhile may not have reported yet: look again after the poll.
   */
  private checkStall(): void {
    setImmediate(() => {
      if (this.stopped || !this.pending) return;
      // The timer counts from the loop's cached clock, which can be well behind the write's start on a busy
      // loop, so it may fire early: look again when the rest has passed rather than never.
      const left = STALL_MS - (performance.now() - this.pendingSince);
      if (left > 0) {
        setTimeout(() => this.checkStall(), Math.ceil(left)).unref();
        return;
      }
      this.stalled = true;
      this.rampBytes = 0;
      // The client is not reading: what was filled behind the stalled write goes back to the body and the pool.
      if (this.ready && this.body.rewind) {
        this.body.rewind(this.ready.n);
        this.giveBack(this.ready.buffer);
        this.ready = undefined;
      }
    });
  }

  private take(): Buffer {
    if (this.largeSize > this.smallSize && !this.largeSlot && this.rampBytes >= RAMP_BYTES) {
      this.largeSlot = reserveLarge(2 * this.largeSize);
    }
    if (!this.largeSlot || this.rampBytes < RAMP_BYTES) return takeBuffer(this.smallSize);
    this.largeOut++;
    return takeBuffer(this.largeSize);
  }

  private giveBack(buffer: Buffer, reuse = true): void {
    if (buffer.length === this.largeSize && this.largeSize > this.smallSize) this.largeOut--;
    if (reuse) giveBackBuffer(buffer);
    // After a stall, the budget share goes back once the large buffers have.
    if (this.largeSlot && this.largeOut === 0 && this.rampBytes < RAMP_BYTES) this.releaseSlot();
  }

  private releaseSlot(): void {
    if (!this.largeSlot) return;
    this.largeSlot = false;
    releaseLarge(2 * this.largeSize);
  }

  private stop(error?: Error): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.stallTimer) clearTimeout(this.stallTimer);
    this.body.destroy();
    if (this.ready) {
      this.giveBack(this.ready.buffer);
      this.ready = undefined;
    }
    // A buffer still in a pending write is accounted for when the write reports; the budget share goes
    // back now, since that write ends with the socket.
    this.releaseSlot();
    if (error) {
      this.log.warn({ err: error.message }, 'blob body failed mid-transfer; connection cut');
      this.res.destroy(error);
    }
  }
}
