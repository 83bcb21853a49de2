import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/**
 * How much of one response went out, read from its connection's byte counter (a response on an HTTP/1.1
 * connection has the connection to itself while it is written): counts every way of sending a body
 * (Fastify's send, the hijacked pooled-buffer sender, streams) without wrapping any of them.
 */
export class ResponseProgress {
  private readonly socket: Socket | null;
  private readonly startBytes: number;

  constructor(
    request: IncomingMessage,
    private readonly response: ServerResponse,
  ) {
    this.socket = request.socket;
    this.startBytes = this.socket?.bytesWritten ?? 0;
  }

  /** Whether the response ended before all of it was handed to the connection (the client left, the connection was cut). */
  get aborted(): boolean {
    return !this.response.writableFinished;
  }

  /** Body bytes handed to the connection so far (the status line and headers not counted). */
  get bodyBytesSent(): number {
    const written = (this.socket?.bytesWritten ?? this.startBytes) - this.startBytes;
    // Node keeps the serialized status line and headers of a response on it, once they are sent.
    const head: unknown = Reflect.get(this.response, '_header');
    const headBytes = this.response.headersSent && typeof head === 'string' ? Buffer.byteLength(head, 'latin1') : 0;
    return Math.max(0, written - headBytes);
  }
}
