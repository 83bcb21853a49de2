/**
 * Downloads belong to their upstream and are bounded, tried the way an attacker with network access would:
 * a slow or lying upstream of one namespace must not hold or cut the clients of another, and no upstream
 * can make the mirror download (or spool) without limit.
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { randomBytesSeeded, sha256 } from '../fixtures/content.js';
import { MEDIA_TYPES, startFixtureUpstream, type FixtureUpstream } from '../fixtures/upstream.js';
import { eventually } from '../helpers/eventually.js';
import { listFiles } from '../helpers/files.js';
import { startMirror, type StartMirrorOptions, type TestMirror, type TestUpstream } from '../helpers/mirror.js';

const KiB = 1024;
const MiB = 1024 * KiB;

interface Setup {
  /** The upstream an attacker controls (or that is just slow / broken). */
  bad: FixtureUpstream;
  /** A healthy upstream of another namespace. */
  good: FixtureUpstream;
  m: TestMirror;
}

async function setup(t: Test, badOverrides: Partial<TestUpstream> = {}, options: Partial<StartMirrorOptions> = {}): Promise<Setup> {
  const bad = await startFixtureUpstream();
  t.teardown(() => bad.close());
  const good = await startFixtureUpstream();
  t.teardown(() => good.close());
  const m = await startMirror({
    upstreams: [
      { namespace: 'slow.test', host: bad.host, ...badOverrides },
      { namespace: 'good.test', host: good.host },
    ],
    ...options,
  });
  t.teardown(() => m.close());
  return { bad, good, m };
}

const blobUrl = (m: TestMirror, ns: string, digest: string): string => `${m.url}/v2/${ns}/library/alpine-test/blobs/${digest}`;
const manifestUrl = (m: TestMirror, ns: string, ref: string): string => `${m.url}/v2/${ns}/library/alpine-test/manifests/${ref}`;

interface Pulled {
  status: number;
  /** The complete body, or undefined when the transfer was cut or timed out. */
  body: Buffer | undefined;
  received: number;
  ms: number;
}

/** GET and read the whole body within timeoutMs; a cut or timed-out transfer is reported, not thrown. */
async function pull(url: string, timeoutMs = 10_000, headers: Record<string, string> = {}): Promise<Pulled> {
  const started = performance.now();
  const signal = AbortSignal.timeout(timeoutMs);
  let status = 0;
  let received = 0;
  const chunks: Buffer[] = [];
  try {
    const res = await fetch(url, { headers, signal });
    status = res.status;
    for await (const c of res.body ?? []) {
      chunks.push(Buffer.from(c as Uint8Array));
      received += (c as Uint8Array).length;
    }
    return { status, body: Buffer.concat(chunks), received, ms: performance.now() - started };
  } catch {
    return { status, body: undefined, received, ms: performance.now() - started };
  }
}

/** Starts a GET and walks away after `ms` (the attacker's client leaving a stuck download behind). */
async function startAndLeave(url: string, ms: number, headers: Record<string, string> = {}): Promise<void> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), ms);
  try {
    const res = await fetch(url, { headers, signal: controller.signal });
    for await (const _ of res.body ?? []) void _;
  } catch {
    // Left, as planned.
  } finally {
    clearTimeout(timer);
  }
}

function ociCode(p: Pulled): string | undefined {
  try {
    const doc = JSON.parse((p.body ?? Buffer.alloc(0)).toString('utf8')) as { errors?: { code?: string }[] };
    return doc.errors?.[0]?.code;
  } catch {
    return undefined;
  }
}

const spoolDir = (m: TestMirror): string => join(m.root, '..', `${m.root.split('/').pop() ?? ''}-spool`);

/** Download files on local disk: the cache's tmp/ (filesystem spools) and the spool directory. */
async function spoolFiles(m: TestMirror): Promise<string[]> {
  return [...(await listFiles(join(m.root, 'tmp'))), ...(await listFiles(spoolDir(m)))];
}

async function stored(m: TestMirror, digest: string): Promise<boolean> {
  return (await m.storage.statBlob(digest)) !== undefined;
}

/** Both upstreams hold the same blob (a public base layer, say). */
function sharedBlob(s: Setup, size: number, seed: number): { bytes: Buffer; digest: string } {
  const bytes = randomBytesSeeded(size, seed);
  const digest = s.bad.addBlob(bytes);
  s.good.addBlob(bytes);
  return { bytes, digest };
}

t.test('a stuck download of one namespace does not take over the same blob pulled through another namespace', async (t) => {
  const s = await setup(t);
  const { digest } = sharedBlob(s, 64 * KiB, 1);
  // One byte every 2 s: alive enough never to hit the read timeout.
  s.bad.setBlobFault(digest, { kind: 'slow', chunkSize: 1, delayMs: 2000 });
  await startAndLeave(blobUrl(s.m, 'slow.test', digest), 1000);

  const got = await pull(blobUrl(s.m, 'good.test', digest), 5000);
  t.equal(got.status, 200);
  t.equal(got.body && sha256(got.body), digest, `good.test's client gets the right bytes (in ${Math.round(got.ms)} ms)`);
  t.equal(s.good.blobGets(digest), 1, "from good.test's own upstream");
});

t.test('a stuck manifest download of one namespace does not take over the same manifest by digest through another', async (t) => {
  const s = await setup(t);
  const accept = MEDIA_TYPES.ociManifest;
  const image = {
    schemaVersion: 2,
    mediaType: accept,
    config: { mediaType: MEDIA_TYPES.ociConfig, digest: `sha256:${'a'.repeat(64)}`, size: 2 },
    layers: [],
  };
  const digest = s.bad.addManifest('library/alpine-test', image, accept);
  s.good.addManifest('library/alpine-test', image, accept);
  s.bad.setManifestFault('library/alpine-test', digest, { kind: 'slow', chunkSize: 1, delayMs: 2000 });
  await startAndLeave(manifestUrl(s.m, 'slow.test', digest), 1000, { accept });

  const got = await pull(manifestUrl(s.m, 'good.test', digest), 5000, { accept });
  t.equal(got.status, 200);
  t.equal(got.body && sha256(got.body), digest, `good.test's client gets the manifest (in ${Math.round(got.ms)} ms)`);
});

t.test("wrong bytes from one namespace's upstream do not cut the clients of another namespace", async (t) => {
  const s = await setup(t);
  const { digest } = sharedBlob(s, 256 * KiB, 2);
  // Wrong bytes, sent slowly enough (~1.2 s) that the other namespace's request arrives while they flow.
  s.bad.setBlobFault(digest, { kind: 'wrong-digest', slow: { chunkSize: 32 * KiB, delayMs: 150 } });
  const attacker = pull(blobUrl(s.m, 'slow.test', digest));
  await eventually(() => s.bad.blobGets(digest) > 0);
  await new Promise((r) => setTimeout(r, 200));
  const victim = await pull(blobUrl(s.m, 'good.test', digest));
  t.equal(victim.status, 200);
  t.equal(victim.body && sha256(victim.body), digest, "good.test's client gets the right bytes");
  t.equal((await attacker).body, undefined, "slow.test's own client is cut");
  await s.m.settled();
  t.ok(await stored(s.m, digest), "the blob is stored from good.test's verified download");
});

t.test("the collector keeps a digest that another upstream's download is still writing", async (t) => {
  const s = await setup(t, {}, { lifecycle: { maxCacheSize: { kind: 'bytes', bytes: 1 }, graceMs: 0, gcIntervalMs: 0 } });
  const { digest } = sharedBlob(s, 64 * KiB, 13);
  s.bad.setBlobFault(digest, { kind: 'slow', chunkSize: 1, delayMs: 2000 });
  await startAndLeave(blobUrl(s.m, 'slow.test', digest), 300);
  const got = await pull(blobUrl(s.m, 'good.test', digest), 5000);
  t.equal(got.body && sha256(got.body), digest);
  t.ok(await eventually(() => stored(s.m, digest)), "stored from good.test's download");
  t.ok(s.m.server.mirror.inUse(digest), "in use: slow.test's download of it still runs");
  await s.m.server.collector.run();
  t.ok(await stored(s.m, digest), 'not evicted while any download of it runs');
});

t.test('a stalled download whose client left is aborted after read_timeout: nothing stored, spool removed', async (t) => {
  const s = await setup(t, { readTimeoutMs: 1000 });
  const { digest } = sharedBlob(s, 4 * MiB, 3);
  s.bad.setBlobFault(digest, { kind: 'stall', afterBytes: MiB, ms: 60_000 });
  await startAndLeave(blobUrl(s.m, 'slow.test', digest), 300);
  t.ok(await eventually(() => s.m.server.mirror.blobs.inflightCount === 0, 5000), 'the download was aborted within a few seconds');
  t.ok(await eventually(async () => (await spoolFiles(s.m)).length === 0, 2000), 'no spool file left');
  t.notOk(await stored(s.m, digest), 'nothing stored');
});

t.test('a body longer than the Content-Length its upstream announced is not taken: nothing stored', async (t) => {
  const s = await setup(t);
  const { bytes, digest } = sharedBlob(s, 256 * KiB, 4);
  s.bad.setBlobFault(digest, { kind: 'content-length', value: bytes.length / 2 });
  const got = await pull(blobUrl(s.m, 'slow.test', digest), 5000);
  t.equal(got.body, undefined, 'the transfer is cut');
  t.ok(got.ms < 4000, `quickly (${Math.round(got.ms)} ms)`);
  await s.m.settled();
  t.notOk(await stored(s.m, digest), 'nothing stored');
  t.same(await spoolFiles(s.m), [], 'no spool file left');
});

t.test('a Content-Length above --max-blob-size is refused before downloading: 502 with an OCI body, no spool', async (t) => {
  const s = await setup(t, {}, { downloads: { maxBlobSize: MiB } });
  const { digest } = sharedBlob(s, 64 * KiB, 5);
  s.bad.setBlobFault(digest, { kind: 'content-length', value: 2 * MiB });
  const got = await pull(blobUrl(s.m, 'slow.test', digest), 5000);
  t.equal(got.status, 502);
  t.equal(ociCode(got), 'UPSTREAM_ERROR');
  t.ok(got.ms < 4000, `answered at once (${Math.round(got.ms)} ms)`);
  t.same(await spoolFiles(s.m), [], 'no spool file');
  t.equal(s.m.server.mirror.blobs.inflightCount, 0, 'no download running');
});

t.test('Content-Length 10^15 is refused with the default --max-blob-size (64 GiB)', async (t) => {
  const s = await setup(t);
  const { digest } = sharedBlob(s, 64 * KiB, 6);
  s.bad.setBlobFault(digest, { kind: 'content-length', value: 1e15 });
  const got = await pull(blobUrl(s.m, 'slow.test', digest), 5000);
  t.equal(got.status, 502);
  t.equal(ociCode(got), 'UPSTREAM_ERROR');
  t.same(await spoolFiles(s.m), [], 'no spool file');
  t.equal(s.m.server.mirror.blobs.inflightCount, 0, 'no download running');
});

t.test('an endless chunked body is aborted at --max-blob-size: the client is cut, nothing stored, spool removed', async (t) => {
  const s = await setup(t, {}, { downloads: { maxBlobSize: 2 * MiB } });
  const { digest } = sharedBlob(s, 64 * KiB, 7);
  s.bad.setBlobFault(digest, { kind: 'endless' });
  const got = await pull(blobUrl(s.m, 'slow.test', digest), 8000);
  t.equal(got.body, undefined, 'the transfer is cut');
  t.ok(got.ms < 6000, `quickly (${Math.round(got.ms)} ms)`);
  t.ok(got.received <= 2 * MiB, `at most the maximum reached the client (${got.received} bytes)`);
  t.ok(await eventually(() => s.m.server.mirror.blobs.inflightCount === 0, 3000), 'the download ended');
  t.ok(await eventually(async () => (await spoolFiles(s.m)).length === 0, 2000), 'no spool file left');
  t.notOk(await stored(s.m, digest), 'nothing stored');
});

t.test('an endless chunked body whose client left is aborted at --max-blob-size too', async (t) => {
  const s = await setup(t, {}, { downloads: { maxBlobSize: 4 * MiB } });
  const { digest } = sharedBlob(s, 64 * KiB, 8);
  s.bad.setBlobFault(digest, { kind: 'endless' });
  await startAndLeave(blobUrl(s.m, 'slow.test', digest), 100);
  t.ok(await eventually(() => s.m.server.mirror.blobs.inflightCount === 0, 5000), 'the download ended');
  t.ok(await eventually(async () => (await spoolFiles(s.m)).length === 0, 2000), 'no spool file left');
});

t.test('past --max-spool-size, a new uncached pull streams to its client without spooling', async (t) => {
  const s = await setup(t, {}, { downloads: { maxSpoolSize: MiB } });
  const big = sharedBlob(s, 2 * MiB, 9);
  const small = sharedBlob(s, 256 * KiB, 10);
  // A download that holds the whole spool bound (its announced size counts in full) for a while.
  s.good.setBlobFault(big.digest, { kind: 'stall', afterBytes: 64 * KiB, ms: 1500, times: 1 });
  const first = pull(blobUrl(s.m, 'good.test', big.digest));
  await eventually(() => s.good.blobGets(big.digest) > 0);
  await eventually(async () => (await spoolFiles(s.m)).length > 0);

  const next = await pull(blobUrl(s.m, 'good.test', small.digest));
  t.equal(next.status, 200);
  t.equal(next.body && sha256(next.body), small.digest, 'the right bytes');
  // Tag records and access links written behind responses pass through tmp/ too, as files of a few bytes.
  const downloads = [];
  for (const f of await spoolFiles(s.m)) if (((await stat(f).catch(() => undefined))?.size ?? 0) >= KiB) downloads.push(f);
  t.equal(downloads.length, 1, "only the first download's spool file exists");
  t.equal((await first).body && sha256((await first).body as Buffer), big.digest, 'the first download completes');
  await s.m.settled();
  t.ok(await stored(s.m, big.digest), 'the first blob is cached');
  t.notOk(await stored(s.m, small.digest), 'the streamed one is not');
  const again = await pull(blobUrl(s.m, 'good.test', small.digest));
  t.equal(again.body && sha256(again.body), small.digest);
  await s.m.settled();
  t.ok(await stored(s.m, small.digest), 'with the spool free again, pulls are cached again');
});

t.test('past --max-spool-size, a streamed blob with wrong bytes still cuts its client (the digest is verified)', async (t) => {
  const s = await setup(t, {}, { downloads: { maxSpoolSize: MiB } });
  const big = sharedBlob(s, 2 * MiB, 11);
  const small = sharedBlob(s, 256 * KiB, 12);
  s.good.setBlobFault(big.digest, { kind: 'stall', afterBytes: 64 * KiB, ms: 1500, times: 1 });
  s.good.setBlobFault(small.digest, { kind: 'wrong-digest', times: 1 });
  const first = pull(blobUrl(s.m, 'good.test', big.digest));
  await eventually(async () => (await spoolFiles(s.m)).length > 0);
  const next = await pull(blobUrl(s.m, 'good.test', small.digest));
  t.equal(next.body, undefined, 'the transfer is cut before its last byte');
  await first;
});
