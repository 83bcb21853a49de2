import t from 'tap';
import Fastify, { type FastifyInstance } from 'fastify';
import { request as httpRequest } from 'node:http';
import { Readable } from 'node:stream';
import { sendFilledBody } from '../../src/http/send-filled-body.js';
import type { BufferFiller } from '../../src/storage/storage.js';
import { randomBytesSeeded } from '../fixtures/content.js';
import { eventually } from '../helpers/eventually.js';

/** A body that fills buffers from memory, records them, and can fail after some bytes. */
class MemoryFiller extends Readable implements BufferFiller {
  private position = 0;
  readonly buffersSeen = new Set<Buffer>();
  reads = 0;
  wasClosed = false;

  constructor(
    readonly bytes: Buffer,
    private readonly failAt = Infinity,
    private readonly delayMs = 0,
  ) {
    super();
  }

  async fill(buffer: Buffer): Promise<number> {
    this.buffersSeen.add(buffer);
    this.reads++;
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    if (this.position >= this.failAt) throw new Error('EIO: injected read error');
    const n = Math.min(buffer.length, this.bytes.length - this.position, this.failAt - this.position);
    this.bytes.copy(buffer, 0, this.position, this.position + n);
    this.position += n;
    return n;
  }

  override _read(): void {
    throw new Error('the stream interface is not used when the sender fills buffers');
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.wasClosed = true;
    cb(err);
  }
}

async function serve(body: () => MemoryFiller, status = 200): Promise<{ app: FastifyInstance; url: string; bodies: MemoryFiller[] }> {
  const app = Fastify();
  const bodies: MemoryFiller[] = [];
  app.get('/blob', async (_request, reply) => {
    const b = body();
    bodies.push(b);
    reply.code(status).header('docker-content-digest', 'sha256:x').header('content-length', b.bytes.length);
    return sendFilledBody(reply, b);
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return { app, url: `http://127.0.0.1:${port}/blob`, bodies };
}

interface Received {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  complete: boolean;
}

function get(url: string, abortAfter?: number): Promise<Received> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { agent: false }, (res) => {
      const chunks: Buffer[] = [];
      let got = 0;
      res.on('data', (c: Buffer) => {
        chunks.push(c);
        got += c.length;
        if (abortAfter !== undefined && got >= abortAfter) req.destroy();
      });
      const done = () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), complete: res.complete });
      res.on('end', done);
      res.on('close', done);
      res.on('error', () => undefined);
    });
    req.on('error', (e) => (abortAfter !== undefined ? undefined : reject(e)));
    req.end();
  });
}

t.test('a filled body arrives complete and exact, with the status and headers set on the reply', async (t) => {
  const bytes = randomBytesSeeded(5 * 1024 * 1024 + 123, 3);
  const { app, url, bodies } = await serve(() => new MemoryFiller(bytes), 206);
  t.teardown(() => app.close());
  const r = await get(url);
  t.equal(r.status, 206);
  t.equal(r.headers['docker-content-digest'], 'sha256:x');
  t.equal(r.headers['content-length'], String(bytes.length));
  t.ok(r.complete, 'complete response');
  t.ok(r.body.equals(bytes), 'exact bytes');
  await eventually(() => bodies[0]?.wasClosed === true);
  t.ok(bodies[0]?.wasClosed, 'the body is destroyed (its file closed) at the end');
});

t.test('a whole transfer reuses two buffers, whatever its length', async (t) => {
  const bytes = randomBytesSeeded(20 * 1024 * 1024, 4);
  const { app, url, bodies } = await serve(() => new MemoryFiller(bytes));
  t.teardown(() => app.close());
  const r = await get(url);
  t.ok(r.body.equals(bytes), 'exact bytes');
  t.ok((bodies[0]?.buffersSeen.size ?? 99) <= 2, `buffers used: ${bodies[0]?.buffersSeen.size}`);
});

t.test('an empty body sends headers and ends', async (t) => {
  const { app, url, bodies } = await serve(() => new MemoryFiller(Buffer.alloc(0)));
  t.teardown(() => app.close());
  const r = await get(url);
  t.equal(r.status, 200);
  t.equal(r.body.length, 0);
  t.ok(r.complete);
  await eventually(() => bodies[0]?.wasClosed === true);
  t.ok(bodies[0]?.wasClosed);
});

t.test('a read error mid-transfer cuts the connection: the client never sees a complete response', async (t) => {
  const bytes = randomBytesSeeded(4 * 1024 * 1024, 5);
  const { app, url, bodies } = await serve(() => new MemoryFiller(bytes, 1024 * 1024 + 7));
  t.teardown(() => app.close());
  const r = await get(url);
  t.equal(r.status, 200, 'headers were already sent');
  t.notOk(r.complete, 'incomplete response');
  t.ok(r.body.length < bytes.length, `got ${r.body.length} of ${bytes.length} bytes`);
  t.ok(bodies[0]?.wasClosed, 'the body is destroyed');
});

t.test('a body that fails before its first bytes becomes an error response, not a cut one', async (t) => {
  const { app, url, bodies } = await serve(() => new MemoryFiller(randomBytesSeeded(1024, 7), 0));
  t.teardown(() => app.close());
  const r = await get(url);
  t.equal(r.status, 500, 'the error path answers');
  t.ok(r.complete, 'a complete error response');
  t.match(r.body.toString(), /injected read error/);
  t.ok(bodies[0]?.wasClosed, 'the body is destroyed');
});

t.test('a client that goes away mid-transfer stops the reads and closes the body', async (t) => {
  const bytes = randomBytesSeeded(64 * 1024 * 1024, 6);
  const { app, url, bodies } = await serve(() => new MemoryFiller(bytes, Infinity, 5));
  t.teardown(() => app.close());
  await get(url, 1024 * 1024);
  await eventually(() => bodies[0]?.wasClosed === true);
  t.ok(bodies[0]?.wasClosed, 'the body is destroyed');
  const reads = bodies[0]?.reads ?? 0;
  t.ok(reads < 64 * 2, `stopped after ${reads} of 128 reads`);
  await new Promise((r) => setTimeout(r, 100));
  t.equal(bodies[0]?.reads, reads, 'no reads after the client left');
  const again = await get(url);
  t.ok(again.body.equals(bytes), 'the server still serves the next client');
});
