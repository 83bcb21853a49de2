import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export interface StalledResponse {
  /** The client's address. */
  client: string | undefined;
  method: string | undefined;
  path: string | undefined;
  /** Bytes written to the socket that the kernel has not taken yet. */
  pendingBytes: number;
  stalledMs: number;
}

interface Watched {
  res: ServerResponse;
  /** `url` with its query: cut only for a stalled response's log record. */
  info: { client: string | undefined; method: string | undefined; url: string | undefined };
  /** Bytes whose socket writes completed, when last looked at. */
  taken: number;
  /** The libuv write queue, when last looked at: it shrinks as the kernel takes part of a large write. */
  queued: number | undefined;
  /** When the socket last took bytes, or had nothing waiting. */
  progressAt: number;
}

/** Node's stream handle counts the bytes of its pending writes (what net.Socket's own timeout looks at). */
function libuvQueue(socket: Socket): number | undefined {
  const handle = (socket as unknown as { _handle?: { writeQueueSize?: unknown } | null })._handle;
  return typeof handle?.writeQueueSize === 'number' ? handle.writeQueueSize : undefined;
}

/**
 * Closes responses whose client takes no bytes for `timeoutMs` (`--send-timeout`). Progress-based: the
 * clock runs only while written bytes wait for the client, and any byte the kernel takes restarts it, so
 * a slow client of a huge blob is never cut, and a response waiting on its own source (a download that
 * has not received the next bytes) is not the client's fault. One sweep over the open responses, a few
 * times per timeout, instead of a timer per response.
 */
export class SendWatchdog {
  private readonly watched = new Set<Watched>();
  private sweeper: NodeJS.Timeout | undefined;
  private readonly intervalMs: number;

  constructor(
    private readonly timeoutMs: number,
    private readonly onStalled: (response: StalledResponse) => void,
  ) {
    this.intervalMs = Math.min(1000, Math.max(10, Math.floor(timeoutMs / 4)));
  }

  /** Watches `res` until it closes (finished or aborted); `url` is the request's (its query is not logged). */
  watch(res: ServerResponse, client: string | undefined, method: string | undefined, url: string | undefined): void {
    const entry: Watched = { res, info: { client, method, url }, taken: 0, queued: undefined, progressAt: performance.now() };
    this.watched.add(entry);
    res.once('close', () => this.watched.delete(entry));
    // Stopped by the sweep that finds nothing to watch, not when the set empties: small responses empty
    // it after every batch, and a timer started and stopped per batch costs more than the sweep.
    this.sweeper ??= setInterval(() => this.sweep(), this.intervalMs).unref();
  }

  get size(): number {
    return this.watched.size;
  }

  close(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
    this.watched.clear();
  }

  private sweep(): void {
    if (this.watched.size === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
      return;
    }
    const now = performance.now();
    for (const entry of this.watched) {
      const socket = entry.res.socket;
      // No socket yet (a pipelined response waiting for the one before it) or already gone.
      if (!socket || socket.destroyed) continue;
      const waiting = socket.writableLength;
      const taken = (socket.bytesWritten ?? 0) - waiting;
      const queued = libuvQueue(socket);
      const moved = taken > entry.taken || (queued !== undefined && entry.queued !== undefined && queued < entry.queued);
      entry.taken = taken;
      entry.queued = queued;
      if (waiting === 0 || moved) {
        entry.progressAt = now;
        continue;
      }
      const stalledMs = now - entry.progressAt;
      if (stalledMs < this.timeoutMs) continue;
      this.watched.delete(entry);
      const { client, method, url } = entry.info;
      this.onStalled({ client, method, path: url?.split('?')[0], pendingBytes: waiting, stalledMs: Math.round(stalledMs) });
      // A reset, not a FIN queued behind bytes the client will not read: the kernel drops the socket's
      // buffers now (up to a few MiB per connection) instead of keeping them for the orphan's lifetime.
      if (typeof socket.resetAndDestroy === 'function') socket.resetAndDestroy();
      else socket.destroy();
    }
  }
}
