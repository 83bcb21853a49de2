/**
 * The one log line per request (`"msg":"request"`): a response the client abandons is logged too, saying
 * that it was aborted, with the status sent and how many body bytes went out.
 */
import { Writable } from 'node:stream';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { createLogger } from '../../src/log.js';
import { randomBytesSeeded } from '../fixtures/content.js';
import { startFixtureUpstream, type FixtureUpstream } from '../fixtures/upstream.js';
import { eventually } from '../helpers/eventually.js';
import { startMirror, type TestMirror } from '../helpers/mirror.js';

const REPO = 'team/app';
const SIZE = 2 * 1024 * 1024;

type LogLine = Record<string, unknown>;

async function setup(t: Test): Promise<{ up: FixtureUpstream; m: TestMirror; lines: LogLine[]; digest: string }> {
  const lines: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.startsWith('{')) lines.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  const up = await startFixtureUpstream();
  const img = up.addImage(REPO, { tag: 'v1', layers: [randomBytesSeeded(SIZE, 3)] });
  const m = await startMirror({ upstreams: [{ namespace: up.host, host: up.host }], log: createLogger('info', sink) });
  t.teardown(async () => {
    await m.close();
    await up.close();
  });
  return { up, m, lines, digest: img.layerDigests[0] as string };
}

const requestLines = (lines: LogLine[], pathPart: string) =>
  lines.filter((l) => l['msg'] === 'request' && String(l['path']).includes(pathPart));

t.test('a complete response is logged once, not as aborted, with its bytes', async (t) => {
  const { up, m, lines, digest } = await setup(t);
  const res = await request(`${m.url}/v2/${REPO}/blobs/${digest}?ns=${up.host}`);
  t.equal((await res.body.arrayBuffer()).byteLength, SIZE);
  t.ok(await eventually(() => requestLines(lines, digest).length > 0));
  await new Promise((r) => setTimeout(r, 100));
  const logged = requestLines(lines, digest);
  t.equal(logged.length, 1, 'one line');
  t.match(logged[0], { status: 200, bytes: SIZE, sent: SIZE });
  t.notOk(logged[0]?.['aborted'], 'not aborted');
});

t.test('a client that leaves mid-body is logged as aborted with the status and the bytes sent', async (t) => {
  const { up, m, lines, digest } = await setup(t);
  // 64 KiB every 50 ms: the client reads a few chunks, then leaves.
  up.setBlobFault(digest, { kind: 'slow', chunkSize: 64 * 1024, delayMs: 50 });
  const aborter = new AbortController();
  const res = await request(`${m.url}/v2/${REPO}/blobs/${digest}?ns=${up.host}`, { signal: aborter.signal });
  t.equal(res.statusCode, 200);
  let received = 0;
  try {
    for await (const chunk of res.body) {
      received += (chunk as Buffer).length;
      if (received >= 200 * 1024) aborter.abort();
    }
  } catch {
    // the abort
  }
  t.ok(await eventually(() => requestLines(lines, digest).length > 0), 'the request is logged');
  const [line] = requestLines(lines, digest);
  t.match(line, { aborted: true, status: 200, bytes: SIZE }, `${JSON.stringify(line)}`);
  const sent = Number(line?.['sent']);
  t.ok(sent >= received && sent < SIZE, `sent ${sent} bytes: at least the ${received} received, less than the body`);
});

t.test('a client that leaves before the headers is logged as aborted with status 499 and nothing sent', async (t) => {
  const { up, m, lines } = await setup(t);
  up.setGlobalFault({ kind: 'stall', ms: 60_000 });
  const aborter = new AbortController();
  const pending = request(`${m.url}/v2/${REPO}/manifests/v1?ns=${up.host}`, { signal: aborter.signal }).catch(() => undefined);
  t.ok(await eventually(() => up.requests.some((r) => r.path.includes('/manifests/v1'))));
  aborter.abort();
  await pending;
  t.ok(await eventually(() => requestLines(lines, '/manifests/v1').length > 0), 'the request is logged');
  const [line] = requestLines(lines, '/manifests/v1');
  t.match(line, { aborted: true, status: 499, sent: 0 }, `${JSON.stringify(line)}`);
  up.setGlobalFault(undefined);
});
