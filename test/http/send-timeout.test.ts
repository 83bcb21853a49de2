/**
 * --send-timeout: a response whose client takes no bytes for that long is closed, logged and counted.
 * Progress-based: a slow client that keeps reading is kept however long its transfer, and the clock does
 * not run while the response waits for its own source (a download between chunks). Real sockets; the
 * stalled clients are raw TCP clients that stop reading (test/helpers/raw-client.ts), with blobs larger
 * than what the kernel's socket buffers absorb (about 4 MiB on loopback).
 */
import { PassThrough } from 'node:stream';
import t, { type Test } from 'tap';
import { createLogger } from '../../src/log.js';
import { randomBytesSeeded, sha256 } from '../fixtures/content.js';
import { startFixtureUpstream, type FixtureUpstream } from '../fixtures/upstream.js';
import { eventually } from '../helpers/eventually.js';
import { startMirror, type TestMirror } from '../helpers/mirror.js';
import { rawGet, type RawGet } from '../helpers/raw-client.js';

const MiB = 1024 * 1024;
const SEND_TIMEOUT_MS = 2000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Setup {
  up: FixtureUpstream;
  mirror: TestMirror;
  port: number;
  logs: () => Record<string, unknown>[];
  path: (digest: string) => string;
}

async function setup(t: Test, sendTimeoutMs = SEND_TIMEOUT_MS): Promise<Setup> {
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  const lines: string[] = [];
  const out = new PassThrough();
  out.on('data', (c: Buffer) => lines.push(...c.toString().split('\n').filter(Boolean)));
  const mirror = await startMirror({ upstreams: [{ namespace: up.host, host: up.host }], sendTimeoutMs, log: createLogger('warn', out) });
  t.teardown(() => mirror.close());
  return {
    up,
    mirror,
    port: Number(new URL(mirror.url).port),
    logs: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>),
    path: (digest) => `/v2/library/app/blobs/${digest}?ns=${up.host}`,
  };
}

async function cached(t: Test, s: Setup, bytes: Buffer): Promise<string> {
  const digest = s.up.addBlob(bytes);
  const res = await fetch(`${s.mirror.url}${s.path(digest)}`);
  t.equal(sha256(Buffer.from(await res.arrayBuffer())), digest, 'pulled once');
  await s.mirror.settled();
  t.ok(await s.mirror.storage.statBlob(digest), 'cached');
  return digest;
}

/**
 * The mirror reset the connection: the client sees it once it has read what its kernel still queues
 * (Linux delivers queued bytes before the reset).
 */
async function closedByMirror(t: Test, client: RawGet, size: number): Promise<void> {
  client.readAll();
  t.ok(await Promise.race([client.closed.then(() => true), sleep(30_000).then(() => false)]), 'the connection is closed');
  t.ok(client.bodyBytes < size, `the body was cut (${client.bodyBytes} of ${size} bytes)`);
}

async function sendTimeouts(mirror: TestMirror): Promise<number> {
  const text = await (await fetch(`${mirror.url}/metrics`)).text();
  return Number(/^oci_registry_send_timeouts_total (\d+)/m.exec(text)?.[1] ?? NaN);
}

t.test('a client that reads nothing for the send timeout is disconnected, logged and counted', async (t) => {
  const s = await setup(t);
  const digest = await cached(t, s, randomBytesSeeded(32 * MiB, 1));
  const client = rawGet(s.port, s.path(digest));
  t.teardown(() => client.socket.destroy());
  t.equal((await client.head).status, 200);
  const started = performance.now();
  t.ok(await eventually(async () => (await sendTimeouts(s.mirror)) === 1, 30_000, 100), 'the mirror gave up on the response');
  const after = performance.now() - started;
  t.ok(after >= SEND_TIMEOUT_MS - 100, `not before the timeout (${Math.round(after)} ms)`);
  await closedByMirror(t, client, 32 * MiB);
  t.equal(await sendTimeouts(s.mirror), 1, 'oci_registry_send_timeouts_total');
  const line = s.logs().find((l) => l['msg'] === 'client took no bytes for the send timeout: connection closed');
  t.ok(line, 'a warning is logged');
  t.match(line, { client: '127.0.0.1', method: 'GET', path: `/v2/library/app/blobs/${digest}`, sendTimeoutMs: SEND_TIMEOUT_MS });
  t.ok(Number(line?.['pendingBytes']) > 0, 'with the bytes it left waiting');
  // The mirror serves on.
  const again = await fetch(`${s.mirror.url}${s.path(digest)}`);
  t.equal(sha256(Buffer.from(await again.arrayBuffer())), digest, 'the next client gets the blob');
});

t.test('a slow client that keeps reading is kept, for many times the send timeout', async (t) => {
  // The mirror sees progress when its kernel takes bytes, and Linux reports room in a socket's send
  // buffer in steps (about a third of the buffer: ~1.3 MiB on loopback), so a client is seen to progress
  // when it reads about that much per send timeout. Here: 5 s and ~640 KiB/s.
  const timeoutMs = 5000;
  const s = await setup(t, timeoutMs);
  const bytes = randomBytesSeeded(24 * MiB, 2);
  const digest = await cached(t, s, bytes);
  const client = rawGet(s.port, s.path(digest), { readBuffer: 64 * 1024 });
  t.teardown(() => client.socket.destroy());
  t.equal((await client.head).status, 200);
  const until = performance.now() + 3 * timeoutMs;
  while (performance.now() < until && !client.socket.destroyed) {
    client.readOnce();
    await sleep(100);
  }
  t.notOk(client.socket.destroyed, `still connected after ${3 * timeoutMs} ms (${client.bodyBytes} bytes read)`);
  t.ok(client.bodyBytes < bytes.length / 2, 'the transfer is far from done: it takes many times the timeout');
  client.readAll();
  await eventually(() => client.bodyBytes >= bytes.length || client.socket.destroyed, 60_000);
  t.equal(client.bodyBytes, bytes.length, 'every byte');
  t.equal(client.bodyDigest(), digest, 'the body hashes to the digest');
  t.equal(await sendTimeouts(s.mirror), 0, 'no send timeout counted');
});

t.test("the clock does not run while a response waits for its download: a slow upstream is not the client's fault", async (t) => {
  const s = await setup(t);
  const bytes = randomBytesSeeded(3 * MiB, 3);
  const digest = s.up.addBlob(bytes);
  // The upstream goes silent for twice the send timeout, halfway through.
  s.up.setBlobFault(digest, { kind: 'stall', afterBytes: 1.5 * MiB, ms: 2 * SEND_TIMEOUT_MS });
  // Two clients: the first follows the download as a stream, the second joins it and fills buffers.
  const first = fetch(`${s.mirror.url}${s.path(digest)}`);
  await eventually(() => s.up.blobGets(digest) > 0);
  const second = fetch(`${s.mirror.url}${s.path(digest)}`);
  for (const [i, res] of (await Promise.all([first, second])).entries()) {
    t.equal(res.status, 200, `client ${i + 1}: 200`);
    t.equal(sha256(Buffer.from(await res.arrayBuffer())), digest, `client ${i + 1}: the whole blob`);
  }
  t.equal(await sendTimeouts(s.mirror), 0, 'no send timeout counted');
});

t.test("abuse: a client that reads a byte at a time is cut, because the mirror's socket takes nothing from it", async (t) => {
  // One byte per read lets the client's kernel advertise no new window (TCP waits for about a segment
  // of free space), so the mirror's kernel takes no bytes and the response makes no progress.
  const s = await setup(t);
  const digest = await cached(t, s, randomBytesSeeded(32 * MiB, 4));
  const client = rawGet(s.port, s.path(digest), { readBuffer: 1 });
  t.teardown(() => client.socket.destroy());
  t.equal((await client.head).status, 200);
  // One byte per read, until the mirror gives up.
  const until = performance.now() + 30_000;
  while (performance.now() < until && (await sendTimeouts(s.mirror)) === 0) {
    client.readOnce();
    await sleep(250);
  }
  t.equal(await sendTimeouts(s.mirror), 1, `the mirror gave up on the response (after ${client.bodyBytes} bytes read)`);
  await closedByMirror(t, client, 32 * MiB);
});

t.test('--send-timeout 0 never closes a stalled response', async (t) => {
  const s = await setup(t, 0);
  const digest = await cached(t, s, randomBytesSeeded(32 * MiB, 5));
  const client = rawGet(s.port, s.path(digest));
  t.teardown(() => client.socket.destroy());
  t.equal((await client.head).status, 200);
  await sleep(2 * SEND_TIMEOUT_MS);
  t.notOk(client.socket.destroyed, 'still open');
  client.readAll();
  await eventually(() => client.bodyBytes >= 32 * MiB, 60_000);
  t.equal(client.bodyDigest(), digest, 'and complete when it reads');
});
