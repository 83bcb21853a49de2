/**
 * Graceful shutdown of the CLI process (node dist/cli/main.js): SIGTERM stops accepting, lets the running
 * responses and downloads finish within --shutdown-grace-period, aborts what is left after it, exits 0.
 */
import t, { type Test } from 'tap';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { randomBytesSeeded, sha256 } from '../fixtures/content.js';
import { startFixtureUpstream, type FixtureUpstream } from '../fixtures/upstream.js';
import { eventually } from '../helpers/eventually.js';
import { startMirrorProcess, type MirrorProcess } from '../helpers/mirror-process.js';

const REPO = 'library/slow';
const BLOB_SIZE = 512 * 1024;

async function setup(
  t: Test,
  grace: string,
): Promise<{ upstream: FixtureUpstream; mirror: MirrorProcess; digest: string; blob: Buffer; root: string; path: string }> {
  const upstream = await startFixtureUpstream();
  t.teardown(() => upstream.close());
  const blob = randomBytesSeeded(BLOB_SIZE, 7);
  const image = upstream.addImage(REPO, { tag: 'v1', layers: [blob] });
  const digest = image.layerDigests[0] as string;
  const root = await mkdtemp(join(tmpdir(), 'oci-shutdown-test-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const mirror = await startMirrorProcess({
    root,
    configYaml: `- namespace: ${upstream.host}\n  host: ${upstream.host}\n  tls: false\n`,
    args: ['--shutdown-grace-period', grace],
  });
  t.teardown(() => mirror.kill());
  return { upstream, mirror, digest, blob, root, path: `/v2/${REPO}/blobs/${digest}?ns=${upstream.host}` };
}

/** Starts a GET and resolves once the headers and the first body bytes arrived; `body` then collects the rest. */
async function startDownload(url: string, dispatcher: Agent): Promise<{ status: number; body: Promise<Buffer> }> {
  const res = await request(url, { dispatcher });
  const chunks: Buffer[] = [];
  let first!: () => void;
  const gotFirst = new Promise<void>((r) => (first = r));
  const body = (async () => {
    for await (const chunk of res.body) {
      chunks.push(chunk as Buffer);
      first();
    }
    return Buffer.concat(chunks);
  })();
  body.catch(() => first());
  await gotFirst;
  return { status: res.statusCode, body };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1');
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

/** Files left in the cache root (temp files of aborted downloads would show here). */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

t.test('SIGTERM during a slow blob download: the client gets every byte and the process exits 0', async (t) => {
  const { upstream, mirror, digest, blob, path } = await setup(t, '30s');
  // About 2 s for the whole blob: 32 KiB every 120 ms.
  upstream.setBlobFault(digest, { kind: 'slow', chunkSize: 32 * 1024, delayMs: 120 });
  const dispatcher = new Agent();
  t.teardown(() => dispatcher.destroy());

  const download = await startDownload(mirror.url + path, dispatcher);
  t.equal(download.status, 200);
  const signalledAt = Date.now();
  process.kill(mirror.pid, 'SIGTERM');
  const bytes = await download.body;
  t.equal(bytes.length, blob.length, 'complete body');
  t.equal(sha256(bytes), digest, 'correct bytes');

  const exit = await mirror.exited;
  t.same(exit, { code: 0, signal: null }, 'exit code 0');
  t.ok(Date.now() - signalledAt < 10_000, 'exits soon after the last response, not at the end of the grace period');
  t.ok(
    mirror.logs().some((l) => l['msg'] === 'shutting down'),
    'logs the shutdown',
  );
});

t.test('SIGTERM: the download finishes into the cache before the process exits', async (t) => {
  const { upstream, mirror, digest, blob, root, path } = await setup(t, '30s');
  upstream.setBlobFault(digest, { kind: 'slow', chunkSize: 32 * 1024, delayMs: 120 });
  const dispatcher = new Agent();
  t.teardown(() => dispatcher.destroy());

  const download = await startDownload(mirror.url + path, dispatcher);
  process.kill(mirror.pid, 'SIGTERM');
  await download.body;
  t.same(await mirror.exited, { code: 0, signal: null });

  // A new mirror on the same root serves the blob from the cache without asking the upstream.
  upstream.clearRequests();
  upstream.setBlobFault(digest, undefined);
  const again = await startMirrorProcess({ root, configYaml: `- namespace: ${upstream.host}\n  host: ${upstream.host}\n  tls: false\n` });
  t.teardown(() => again.kill());
  const res = await request(again.url + path, { dispatcher });
  const bytes = Buffer.from(await res.body.arrayBuffer());
  t.equal(res.statusCode, 200);
  t.equal(sha256(bytes), sha256(blob));
  t.equal(upstream.blobGets(digest), 0, 'served from the cache the first mirror filled');
});

t.test('SIGTERM: new connections are refused while in-flight responses finish', async (t) => {
  const { upstream, mirror, digest, path } = await setup(t, '30s');
  upstream.setBlobFault(digest, { kind: 'slow', chunkSize: 32 * 1024, delayMs: 120 });
  const dispatcher = new Agent();
  t.teardown(() => dispatcher.destroy());

  const download = await startDownload(mirror.url + path, dispatcher);
  process.kill(mirror.pid, 'SIGTERM');
  // Give the signal a moment to land.
  let refused = false;
  for (let i = 0; i < 50 && !refused; i++) {
    refused = !(await canConnect(mirror.port));
    if (!refused) await new Promise((r) => setTimeout(r, 20));
  }
  t.ok(refused, 'the listener is closed');
  t.equal((await download.body).length, BLOB_SIZE, 'the running response still completes');
  t.same(await mirror.exited, { code: 0, signal: null });
});

t.test('SIGTERM: a download outlasting the grace period is aborted cleanly and the process exits 0', async (t) => {
  const { upstream, mirror, digest, root, path } = await setup(t, '1s');
  // 16 KiB every 500 ms: 16 s for the blob, far beyond the 1 s grace period.
  upstream.setBlobFault(digest, { kind: 'slow', chunkSize: 16 * 1024, delayMs: 500 });
  const dispatcher = new Agent();
  t.teardown(() => dispatcher.destroy());

  const download = await startDownload(mirror.url + path, dispatcher);
  const signalledAt = Date.now();
  process.kill(mirror.pid, 'SIGTERM');
  const result = await download.body.then(
    (b) => ({ ok: true, length: b.length }),
    () => ({ ok: false, length: -1 }),
  );
  t.notOk(result.ok && result.length === BLOB_SIZE, 'the client does not get a complete body');
  t.same(await mirror.exited, { code: 0, signal: null }, 'exit code 0');
  const took = Date.now() - signalledAt;
  t.ok(took >= 900 && took < 6000, `exits after the grace period (${took} ms)`);
  // The access link is no content: it records that this repository's upstream answered for the digest.
  const content = (await filesUnder(root)).filter((f) => !f.includes('/_links/'));
  t.same(content, [], 'no partial blob or temp file left in the cache');
});

t.test('SIGTERM: a manifest fetch the upstream never answers, its client gone, does not outlast the grace period', async (t) => {
  const { upstream, mirror } = await setup(t, '1s');
  // Every upstream /v2 request hangs (no headers) far beyond the grace period.
  upstream.setGlobalFault({ kind: 'stall', ms: 600_000 });
  const dispatcher = new Agent();
  t.teardown(() => dispatcher.destroy());

  const aborter = new AbortController();
  const pending = request(`${mirror.url}/v2/${REPO}/manifests/v1?ns=${upstream.host}`, { dispatcher, signal: aborter.signal }).catch(
    () => undefined,
  );
  t.ok(await eventually(() => upstream.requests.some((r) => r.path.includes('/manifests/v1'))), 'the mirror asks the upstream');
  aborter.abort();
  await pending;

  const signalledAt = Date.now();
  process.kill(mirror.pid, 'SIGTERM');
  const exit = await Promise.race([mirror.exited, new Promise<'still running'>((r) => setTimeout(() => r('still running'), 8000))]);
  const took = Date.now() - signalledAt;
  t.same(exit, { code: 0, signal: null }, 'exit code 0, not still running');
  t.ok(took >= 900 && took < 6000, `waits out the 1 s grace period, then aborts the fetch and exits (${took} ms)`);
});
