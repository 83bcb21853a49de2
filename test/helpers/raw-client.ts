/**
 * A GET over a raw TCP socket whose reads the test controls: it reads the response head, then reads
 * nothing more until told to. Reads go through a fixed buffer (net's `onread`), so each read takes at
 * most `readBuffer` bytes from the kernel, and between reads the socket does not read at all: the
 * kernel's receive buffer fills and the server's writes stall, as with a client that stopped reading.
 */
import { createHash } from 'node:crypto';
import { connect, type Socket } from 'node:net';

export interface RawGetOptions {
  /** Bytes per read from the kernel (default 16 KiB). */
  readBuffer?: number;
  headers?: Record<string, string>;
  method?: string;
  /** Connect from this local address (e.g. 127.0.0.2: another client to the server). */
  localAddress?: string;
}

export interface RawGet {
  socket: Socket;
  /** The status code and raw head, once they arrived. */
  head: Promise<{ status: number; text: string }>;
  /** Resolves when the connection is closed (by either side). */
  closed: Promise<void>;
  /** Body bytes read so far. */
  readonly bodyBytes: number;
  /** `sha256:<hex>` of the body bytes read so far. */
  bodyDigest(): string;
  /** Reads everything from now on. */
  readAll(): void;
  /** Reads once more (at most readBuffer bytes), then stops again. */
  readOnce(): void;
  /** Stops reading after the current read. */
  stop(): void;
}

export function rawGet(port: number, path: string, options: RawGetOptions = {}): RawGet {
  const readBuffer = Buffer.alloc(options.readBuffer ?? 16 * 1024);
  let headText = '';
  let headDone = false;
  let bodyBytes = 0;
  const hash = createHash('sha256');
  /** Reads still allowed: Infinity reads everything. */
  let allowed = 1;
  let resolveHead!: (h: { status: number; text: string }) => void;
  let rejectHead!: (e: Error) => void;
  const head = new Promise<{ status: number; text: string }>((res, rej) => {
    resolveHead = res;
    rejectHead = rej;
  });
  head.catch(() => undefined);

  const socket = connect({
    port,
    host: '127.0.0.1',
    ...(options.localAddress ? { localAddress: options.localAddress } : {}),
    onread: {
      buffer: readBuffer,
      callback: (nread: number, buf: Uint8Array): boolean => {
        const chunk = Buffer.from(buf.buffer, buf.byteOffset, nread);
        if (!headDone) {
          headText += chunk.toString('latin1');
          const end = headText.indexOf('\r\n\r\n');
          if (end < 0) return true;
          headDone = true;
          const rest = Buffer.from(headText.slice(end + 4), 'latin1');
          bodyBytes += rest.length;
          hash.update(rest);
          const text = headText.slice(0, end);
          resolveHead({ status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0), text });
        } else {
          bodyBytes += nread;
          hash.update(chunk);
        }
        allowed--;
        return allowed > 0;
      },
    },
  });
  const closed = new Promise<void>((res) => socket.once('close', () => res()));
  socket.on('error', () => undefined);
  socket.once('close', () => rejectHead(new Error('connection closed before the response head')));
  const extra = Object.entries(options.headers ?? {})
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  socket.write(`${options.method ?? 'GET'} ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n${extra}\r\n`);

  return {
    socket,
    head,
    closed,
    get bodyBytes() {
      return bodyBytes;
    },
    bodyDigest: () => `sha256:${hash.copy().digest('hex')}`,
    readAll() {
      allowed = Infinity;
      socket.resume();
    },
    readOnce() {
      allowed = 1;
      socket.resume();
    },
    stop() {
      allowed = 1;
    },
  };
}
