import t from 'tap';
import Fastify, { type FastifyInstance } from 'fastify';
import { request as httpRequest } from 'node:http';
import { Readable } from 'node:stream';
import { sendFilledBody, RAMP_BYTES, SMALL_BUFFER_SIZE } from '../../src/http/send-filled-body.js';
import { largeBytesLent } from '../../src/http/buffer-pool.js';
import type { BufferFiller } from '../../src/storage/storage.js';
import { randomBytesSeeded, sha256 } from '../fixtures/content.js';
import { eventually } from '../helpers/eventually.js';
import { rawGet } from '../helpers/raw-client.js';

/** A body that fills buffers from memory, records them, and can fail after some bytes. */
class MemoryFiller extends Readable implements BufferFiller {
  protected position = 0;
  readonly buffersSeen = new Set<Buffer>();
  reads = 0;
  wasClosed = false;
  /** Sizes of the buffers fill() got, in order. */
  readonly sizes: number[] = [];
  readonly rewinds: number[] = [];

  constructor(
    readonly bytes: Buffer,
    private readonly failAt = Infinity,
    private readonly delayMs = 0,
  ) {
    super();
  }

  async fill(buffer: Buffer): Promise<number> {
    this.buffersSeen.add(buffer);
    this.sizes.push(buffer.length);
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

/** A body that can take bytes back, as the cached-file and download bodies can. */
class RewindingFiller extends MemoryFiller {
  rewind(bytes: number): void {
    this.rewinds.push(bytes);
    this.position -= bytes;
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
      const done = () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), complete: res.complete });
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

t.test('a whole transfer reuses two small and then two large buffers, whatever its length', async (t) => {
  const bytes = randomBytesSeeded(40 * 1024 * 1024, 4);
  const { app, url, bodies } = await serve(() => new MemoryFiller(bytes));
  t.teardown(() => app.close());
  const r = await get(url);
  t.ok(r.body.equals(bytes), 'exact bytes');
  const body = bodies[0] as MemoryFiller;
  t.ok(body.buffersSeen.size <= 4, `buffers used: ${body.buffersSeen.size}`);
  t.equal(body.sizes[0], SMALL_BUFFER_SIZE, 'it starts with small buffers');
  t.equal(body.sizes[body.sizes.length - 1], 512 * 1024, 'and ends with large ones');
  const smallBytes = body.sizes.filter((n) => n === SMALL_BUFFER_SIZE).length * SMALL_BUFFER_SIZE;
  t.ok(smallBytes <= RAMP_BYTES + 2 * SMALL_BUFFER_SIZE, `small buffers only for the ramp: ${smallBytes} bytes`);
  await eventually(() => largeBytesLent() === 0);
  t.equal(largeBytesLent(), 0, 'the large-buffer budget is back');
});

t.test('a client that never reads gets only small buffers, and what was filled behind its stalled write is taken back', async (t) => {
  const bytes = randomBytesSeeded(32 * 1024 * 1024, 8);
  const { app, url, bodies } = await serve(() => new RewindingFiller(bytes));
  t.teardown(() => app.close());
  const client = rawGet(Number(new URL(url).port), '/blob');
  t.teardown(() => client.socket.destroy());
  t.equal((await client.head).status, 200);
  const body = await eventually(() => (bodies[0]?.rewinds.length ?? 0) > 0, 10_000).then(() => bodies[0] as RewindingFiller);
  t.ok(body.rewinds.length > 0, 'the buffer filled behind the stalled write was given back');
  const reads = body.reads;
  await new Promise((r) => setTimeout(r, 300));
  t.equal(body.reads, reads, 'no reads while the client reads nothing');
  t.ok(
    body.sizes.every((n) => n === SMALL_BUFFER_SIZE),
    `only ${SMALL_BUFFER_SIZE}-byte buffers (sizes: ${[...new Set(body.sizes)].join(', ')})`,
  );
  client.readAll();
  await eventually(() => client.bodyBytes >= bytes.length, 60_000);
  t.equal(client.bodyDigest(), sha256(bytes), 'exact bytes once it reads');
});

t.test('a client that reads fast and then stops gives back the large buffer filled behind its stalled write', async (t) => {
  const bytes = randomBytesSeeded(48 * 1024 * 1024, 9);
  const { app, url, bodies } = await serve(() => new RewindingFiller(bytes));
  t.teardown(() => app.close());
  const client = rawGet(Number(new URL(url).port), '/blob', { readBuffer: 256 * 1024 });
  t.teardown(() => client.socket.destroy());
  t.equal((await client.head).status, 200);
  client.readAll();
  await eventually(() => client.bodyBytes >= 20 * 1024 * 1024, 60_000, 1);
  client.stop();
  const body = bodies[0] as RewindingFiller;
  t.ok(await eventually(() => body.rewinds.length > 0, 10_000), 'a filled buffer was given back');
  t.ok(body.sizes.includes(512 * 1024), 'the transfer had moved to large buffers');
  // Large unless a hiccup of the shared machine looked like a stall before the client stopped.
  t.equal(body.rewinds[0], body.sizes[body.sizes.length - 1], `the last one filled (rewinds: ${body.rewinds.join(', ')})`);
  client.readAll();
  await eventually(() => client.bodyBytes >= bytes.length, 60_000);
  t.equal(client.bodyDigest(), sha256(bytes), 'exact bytes once it reads again');
  t.ok(await eventually(() => largeBytesLent() === 0), 'the large-buffer budget is back');
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
