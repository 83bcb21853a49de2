/**
 * Coalescing: concurrent requests for one uncached blob cause ONE upstream download, and every request
 * follows its bytes as they arrive. Also the same for manifests and bearer tokens, and the failure cases:
 * the first client leaving does not cancel the download; a download that fails its digest aborts everyone.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer as createTcpServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { randomBytesSeeded, sha256 } from '../fixtures/content.js';
import { startFixtureUpstream, type FixtureOptions, type FixtureUpstream } from '../fixtures/upstream.js';
import { startMirror, type TestMirror, type TestUpstream } from '../helpers/mirror.js';
import { startMirrorProcess, type MirrorProcess } from '../helpers/mirror-process.js';
import { listFiles } from '../helpers/files.js';
import { eventually } from '../helpers/eventually.js';

const MiB = 1024 * 1024;
const OCI_ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json';

async function fixture(t: Test, options?: FixtureOptions): Promise<FixtureUpstream> {
  const up = await startFixtureUpstream(options);
  t.teardown(() => up.close());
  return up;
}

async function mirror(t: Test, upstream: TestUpstream): Promise<TestMirror> {
  const m = await startMirror({ upstreams: [upstream] });
  t.teardown(() => m.close());
  return m;
}

async function hashFile(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return `sha256:${h.digest('hex')}`;
}

/** Stored blob files whose content does not hash to their name. */
async function corruptBlobs(root: string): Promise<string[]> {
  const bad: string[] = [];
  for (const f of await listFiles(join(root, 'blobs'))) {
    if ((await hashFile(f)) !== `sha256:${f.split('/').pop() ?? ''}`) bad.push(f);
  }
  return bad;
}

type Mode = { kind: 'full' } | { kind: 'range'; header: string; start: number; end: number } | { kind: 'abort'; afterBytes: number };

interface Outcome {
  mode: Mode;
  status: number;
  contentRange: string | null;
  /** ms since the test's t0 */
  headersAt: number;
  firstByteAt: number | undefined;
  doneAt: number | undefined;
  received: number;
  digest: string | undefined;
  completed: boolean;
  error: string | undefined;
}

/** One client: GET with an optional Range, hashing the body as it streams; `abort` disconnects early. */
async function client(url: string, mode: Mode, t0: number): Promise<Outcome> {
  const ac = new AbortController();
  const headers: Record<string, string> = {};
  if (mode.kind === 'range') headers['range'] = mode.header;
  const res = await fetch(url, { headers, signal: ac.signal });
  const out: Outcome = {
    mode,
    status: res.status,
    contentRange: res.headers.get('content-range'),
    headersAt: performance.now() - t0,
    firstByteAt: undefined,
    doneAt: undefined,
    received: 0,
    digest: undefined,
    completed: false,
    error: undefined,
  };
  const h = createHash('sha256');
  try {
    for await (const chunk of res.body ?? []) {
      const c = chunk as Uint8Array;
      out.firstByteAt ??= performance.now() - t0;
      out.received += c.length;
      h.update(c);
      if (mode.kind === 'abort' && out.received >= mode.afterBytes) {
        ac.abort();
        break;
      }
    }
    if (mode.kind !== 'abort') {
      out.completed = true;
      out.doneAt = performance.now() - t0;
      out.digest = `sha256:${h.digest('hex')}`;
    }
  } catch (e) {
    out.error = (e as Error).message;
  }
  return out;
}

/** VmRSS / VmHWM of a process, in bytes. */
async function memoryOf(pid: number): Promise<{ rss: number; hwm: number } | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    return undefined;
  }
}

const mib = (n: number) => `${(n / MiB).toFixed(1)} MiB`;

t.test(
  '50 concurrent GETs (full, ranged, early disconnects) for one uncached 50 MiB blob: one upstream download, streamed to all, bounded memory',
  async (t) => {
    const SIZE = 50 * MiB;
    const up = await fixture(t);
    const bytes = randomBytesSeeded(SIZE, 42);
    const digest = up.addBlob(bytes);
    up.setBlobFault(digest, { kind: 'slow', chunkSize: MiB, delayMs: 40 });
    // A small blob to warm the mirror up before the memory baseline.
    const warm = up.addBlob(randomBytesSeeded(256 * 1024, 43));

    const root = await mkdtemp(join(tmpdir(), 'oci-coalesce-'));
    t.teardown(() => rm(root, { recursive: true, force: true }));
    const proc: MirrorProcess = await startMirrorProcess({
      root,
      startTimeoutMs: 60_000,
      configYaml: `- namespace: "${up.host}"\n  host: "${up.host}"\n  tls: false\n`,
    });
    t.teardown(() => proc.stop());
    const url = (d: string) => `${proc.url}/v2/x/big/blobs/${d}?ns=${up.host}`;

    const w = await fetch(url(warm));
    t.equal(w.status, 200, 'warm-up pull');
    await w.arrayBuffer();
    // Baseline: the median of a few samples of the idle, warmed-up mirror (RSS wobbles with GC).
    const idle: number[] = [];
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setTimeout(r, 60));
      const s = await memoryOf(proc.pid);
      if (s) idle.push(s.rss);
    }
    t.equal(idle.length, 5, 'the mirror child process exposes /proc/<pid>/status');
    const baseline = { rss: idle.sort((a, b) => a - b)[2] ?? 0 };
    let peakRss = baseline.rss;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const m = await memoryOf(proc.pid);
        if (m) peakRss = Math.max(peakRss, m.rss);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();

    const modes: Mode[] = [];
    const ranges: [number, number][] = [
      [0, 1023],
      [SIZE / 2, SIZE / 2 + MiB - 1],
      [SIZE - 4096, SIZE - 1],
      [12_345, 7 * MiB + 3],
      [SIZE - 1, SIZE - 1],
    ];
    for (let i = 1; i < 50; i++) {
      if (i % 5 === 0) {
        const [start, end] = ranges[(i / 5) % ranges.length] as [number, number];
        modes.push({ kind: 'range', header: `bytes=${start}-${end}`, start, end });
      } else if (i % 7 === 0) {
        modes.push({ kind: 'abort', afterBytes: 1 + (i % 3) * 100_000 });
      } else {
        modes.push({ kind: 'full' });
      }
    }
    const t0 = performance.now();
    // The leader starts the download; 49 followers join while it runs.
    const leader = client(url(digest), { kind: 'full' }, t0);
    await eventually(() => up.blobGets(digest) > 0, 5000, 5);
    const followers = modes.map((mode) => client(url(digest), mode, t0));
    const storedAt = eventually(
      async () => (await listFiles(join(root, 'blobs'))).some((f) => f.endsWith(digest.slice(7))),
      60_000,
      10,
    ).then(() => performance.now() - t0);
    const results = await Promise.all([leader, ...followers]);
    const stored = await storedAt;
    sampling = false;
    await sampler;
    const after = await memoryOf(proc.pid);

    t.equal(up.blobGets(digest), 1, 'the fixture served the blob exactly once');
    // The fill ended no later than the first complete full body (its last byte waits for verification).
    const fullDone = results.filter((r) => r.mode.kind === 'full' && r.completed).map((r) => r.doneAt as number);
    const fillEnd = Math.min(stored, ...fullDone);
    let fullOk = 0;
    let rangeOk = 0;
    let aborted = 0;
    for (const [i, r] of results.entries()) {
      const who = `client ${i} (${r.mode.kind})`;
      if (r.mode.kind === 'full') {
        t.equal(r.status, 200, `${who}: 200`);
        t.ok(r.completed, `${who}: completed${r.error ? ` (error: ${r.error})` : ''}`);
        t.equal(r.digest, digest, `${who}: body hashes to the digest`);
        t.equal(r.received, SIZE, `${who}: ${SIZE} bytes`);
        if (r.digest === digest) fullOk++;
      } else if (r.mode.kind === 'range') {
        const { start, end } = r.mode;
        t.equal(r.status, 206, `${who} ${r.mode.header}: 206`);
        t.equal(r.contentRange, `bytes ${start}-${end}/${SIZE}`, `${who}: Content-Range`);
        t.equal(r.digest, sha256(bytes.subarray(start, end + 1)), `${who}: body equals the slice`);
        if (r.digest === sha256(bytes.subarray(start, end + 1))) rangeOk++;
      } else {
        t.equal(r.status, 200, `${who}: 200 before disconnecting`);
        aborted++;
      }
    }
    const followerFirstBytes = results
      .slice(1)
      .filter((r) => r.mode.kind === 'full' && r.firstByteAt !== undefined)
      .map((r) => r.firstByteAt as number)
      .sort((a, b) => a - b);
    const lastFirstByte = followerFirstBytes[followerFirstBytes.length - 1] ?? Infinity;
    t.ok(
      lastFirstByte < fillEnd,
      `every full follower got its first byte (latest at ${Math.round(lastFirstByte)} ms) before the fill ended (${Math.round(fillEnd)} ms)`,
    );
    const medianFirst = followerFirstBytes[Math.floor(followerFirstBytes.length / 2)] ?? Infinity;
    t.ok(
      medianFirst < fillEnd / 2,
      `followers stream from the start: median first byte ${Math.round(medianFirst)} ms, fill ended ${Math.round(fillEnd)} ms`,
    );

    const growth = peakRss - baseline.rss;
    const summary =
      `mirror memory: baseline RSS ${mib(baseline.rss)}, peak RSS ${mib(peakRss)} (growth ${mib(growth)}), ` +
      `VmHWM ${mib(after?.hwm ?? 0)} at the end; fill ended at ${Math.round(fillEnd)} ms; ` +
      `${fullOk} full / ${rangeOk} ranged bodies verified, ${aborted} early disconnects`;
    t.comment(summary);
    process.stderr.write(`# ${summary}\n`);
    t.ok(growth < 64 * MiB, `mirror RSS growth ${mib(growth)} < 64 MiB while serving 50 clients a 50 MiB blob`);

    // Stored once, intact; a later request is a cache hit.
    t.same(await corruptBlobs(root), [], 'the stored blob hashes to its name');
    const again = await client(url(digest), { kind: 'full' }, t0);
    t.equal(again.digest, digest, 'a later request gets the blob');
    t.equal(up.blobGets(digest), 1, 'a later request does not hit upstream');
  },
);

t.test("the leader's client disconnecting does not cancel the download: the blob ends up cached", async (t) => {
  const up = await fixture(t);
  const bytes = randomBytesSeeded(8 * MiB, 7);
  const digest = up.addBlob(bytes);
  up.setBlobFault(digest, { kind: 'slow', chunkSize: 512 * 1024, delayMs: 30 });
  const m = await mirror(t, { namespace: up.host, host: up.host });
  const url = `${m.url}/v2/x/app/blobs/${digest}?ns=${up.host}`;

  const leader = await client(url, { kind: 'abort', afterBytes: 1 }, performance.now());
  t.equal(leader.status, 200);
  t.ok(leader.received < bytes.length, `the leader left after ${leader.received} bytes`);
  const cached = await eventually(async () => (await m.storage.statBlob(digest)) !== undefined, 20_000);
  t.ok(cached, 'the download ran to completion and the blob was stored');
  t.same(await corruptBlobs(m.root), [], 'the stored blob hashes to its name');

  const later = await client(url, { kind: 'full' }, performance.now());
  t.equal(later.status, 200);
  t.equal(later.digest, digest, 'a later request gets the right bytes');
  t.equal(up.blobGets(digest), 1, 'and does not hit upstream');
});

/**
 * A TCP relay that slows the upstream's bytes down (each chunk held for `delayMs`): lets a wrong-digest
 * blob, which the fixture sends at full speed, take long enough for every follower to join its fill.
 */
async function throttlingRelay(t: Test, targetPort: number, delayMs: number): Promise<string> {
  const sockets = new Set<Socket>();
  const server: Server = createTcpServer((downstream) => {
    const upstream = connect(targetPort, '127.0.0.1');
    sockets.add(downstream).add(upstream);
    downstream.pipe(upstream);
    upstream.on('data', (chunk: Buffer) => {
      upstream.pause();
      downstream.write(chunk, () => setTimeout(() => upstream.resume(), delayMs));
    });
    upstream.on('end', () => downstream.end());
    const drop = () => {
      upstream.destroy();
      downstream.destroy();
    };
    upstream.on('error', drop);
    downstream.on('error', drop);
    upstream.on('close', () => sockets.delete(upstream));
    downstream.on('close', () => sockets.delete(downstream));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(
    () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  );
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

t.test(
  'a fill that fails its digest aborts every follower: none completes a body, nothing is stored, the next request starts fresh',
  async (t) => {
    const up = await fixture(t);
    const bytes = randomBytesSeeded(8 * MiB, 9);
    const digest = up.addBlob(bytes);
    up.setBlobFault(digest, { kind: 'wrong-digest' });
    const relay = await throttlingRelay(t, up.port, 5);
    const m = await mirror(t, { namespace: up.host, host: relay });
    const url = `${m.url}/v2/x/app/blobs/${digest}?ns=${up.host}`;

    const t0 = performance.now();
    const leader = client(url, { kind: 'full' }, t0);
    await eventually(() => up.blobGets(digest) > 0, 5000, 5);
    const followers = Array.from({ length: 9 }, (_, i) =>
      client(
        url,
        i % 3 === 2 ? { kind: 'range', header: `bytes=${MiB}-${2 * MiB - 1}`, start: MiB, end: 2 * MiB - 1 } : { kind: 'full' },
        t0,
      ),
    );
    const results = await Promise.all([leader, ...followers]);
    t.equal(up.blobGets(digest), 1, 'all ten requests shared one (failing) download');
    for (const [i, r] of results.entries()) {
      t.notOk(
        r.completed,
        `client ${i} (${r.mode.kind}): no complete body (status ${r.status}, ${r.received} bytes, ${r.error ?? 'no error'})`,
      );
      t.not(r.digest, digest);
    }
    t.ok(
      results.slice(1).some((r) => r.received > 0),
      'followers were streaming bytes when the fill failed',
    );
    t.same(await m.storage.statBlob(digest), undefined, 'nothing stored');
    t.ok(await eventually(async () => (await listFiles(join(m.root, 'tmp'))).length === 0, 5000), 'tmp/ is empty again');
    t.same(await corruptBlobs(m.root), []);

    up.setBlobFault(digest, undefined);
    const fresh = await client(url, { kind: 'full' }, performance.now());
    t.equal(fresh.status, 200, 'after the fault clears: 200');
    t.equal(fresh.digest, digest, 'after the fault clears: the right bytes');
    t.equal(up.blobGets(digest), 2, 'the next request started a fresh download');
    t.ok(await eventually(async () => (await m.storage.statBlob(digest)) !== undefined, 5000), 'and it was stored');
  },
);

t.test('concurrent manifest requests for one tag cause one upstream GET', async (t) => {
  const up = await fixture(t);
  const img = up.addImage('x/app', { tag: 'v1' });
  // Hold the upstream body back a moment so that every request arrives while the first fetch runs.
  up.setManifestFault('x/app', 'v1', { kind: 'stall', afterBytes: 0, ms: 300, times: 1 });
  const m = await mirror(t, { namespace: up.host, host: up.host });
  const replies = await Promise.all(
    Array.from({ length: 20 }, async () => {
      const res = await fetch(`${m.url}/v2/x/app/manifests/v1?ns=${up.host}`, { headers: { accept: OCI_ACCEPT } });
      return { status: res.status, digest: res.headers.get('docker-content-digest'), body: Buffer.from(await res.arrayBuffer()) };
    }),
  );
  for (const r of replies) {
    t.equal(r.status, 200);
    t.equal(r.digest, img.digest);
    t.same(r.body, img.bytes);
  }
  t.equal(up.countRequests({ method: 'GET', pathIncludes: '/manifests/' }), 1, 'one upstream manifest GET');
  t.equal(up.countRequests({ method: 'HEAD', pathIncludes: '/manifests/' }), 0, 'and no HEAD');
});

t.test('concurrent manifest requests for one digest cause one upstream GET', async (t) => {
  const up = await fixture(t);
  const img = up.addImage('x/app', { tag: 'v1' });
  up.setManifestFault('x/app', img.digest, { kind: 'stall', afterBytes: 0, ms: 300, times: 1 });
  const m = await mirror(t, { namespace: up.host, host: up.host });
  const statuses = await Promise.all(
    Array.from({ length: 20 }, async () => {
      const res = await fetch(`${m.url}/v2/x/app/manifests/${img.digest}?ns=${up.host}`, { headers: { accept: OCI_ACCEPT } });
      t.same(Buffer.from(await res.arrayBuffer()), img.bytes);
      return res.status;
    }),
  );
  t.same(statuses, Array(20).fill(200));
  t.equal(up.countRequests({ method: 'GET', pathIncludes: '/manifests/' }), 1, 'one upstream manifest GET');
});

t.test('concurrent requests needing a bearer token cause one token fetch', async (t) => {
  const up = await fixture(t, { auth: { kind: 'bearer' } });
  const tags = Array.from({ length: 20 }, (_, i) => `t${i}`);
  for (const tag of tags) up.addImage('x/app', { tag, layers: [Buffer.from(`layer ${tag}`)] });
  const m = await mirror(t, { namespace: up.host, host: up.host });
  // Half of the first, unauthenticated requests are answered (401) 300 ms late, after the token has been
  // fetched for the others: a burst's 401s never all arrive at once. A late 401 for a request that was sent
  // without a token must reuse the token now cached, not throw it away and fetch another.
  up.setGlobalFault({ kind: 'stall', ms: 300, times: 10 });
  // Different tags, so the manifest coalescing does not merge them: each request meets the 401 itself.
  const statuses = await Promise.all(
    tags.map(async (tag) => {
      const res = await fetch(`${m.url}/v2/x/app/manifests/${tag}?ns=${up.host}`, { headers: { accept: OCI_ACCEPT } });
      await res.arrayBuffer();
      return res.status;
    }),
  );
  t.same(statuses, Array(20).fill(200), 'every pull succeeds');
  t.equal(up.tokenRequests.length, 1, `one token fetch for 20 concurrent requests (got ${up.tokenRequests.length})`);
});
