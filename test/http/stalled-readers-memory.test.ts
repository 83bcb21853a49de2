/**
 * Memory of a mirror process while 300 clients request a cached 200 MiB blob and never read it: each
 * response is stuck in a socket write the kernel cannot take, and must hold only a small buffer for it
 * (src/http/send-filled-body.ts), not the two 512 KiB pooled buffers of a fast transfer (which grew RSS
 * by 283 MiB here). Measured on the real CLI (`node dist/cli/main.js`) from /proc/<pid>/status: VmRSS
 * sampled while the clients connect and stall, and VmHWM reset after the warm-up (clear_refs).
 */
import { readFile, writeFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { randomBytesSeeded, sha256 } from '../fixtures/content.js';
import { startFixtureUpstream } from '../fixtures/upstream.js';
import { startMirrorProcess } from '../helpers/mirror-process.js';
import { eventually } from '../helpers/eventually.js';
import { listFiles } from '../helpers/files.js';
import { rawGet, type RawGet } from '../helpers/raw-client.js';

const MiB = 1024 * 1024;
const BLOB_SIZE = 200 * MiB;
const CLIENTS = 300;
const MAX_GROWTH = 64 * MiB;

async function memoryOf(pid: number): Promise<{ rss: number; hwm: number } | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
    return { rss: kib('VmRSS'), hwm: kib('VmHWM') };
  } catch {
    return undefined;
  }
}

const mib = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test(
  `${CLIENTS} clients that request a cached ${BLOB_SIZE / MiB} MiB blob and never read grow the mirror's RSS by less than ${MAX_GROWTH / MiB} MiB`,
  { skip: process.platform !== 'linux' && 'reads /proc/<pid>/status' },
  async (t) => {
    const up = await startFixtureUpstream();
    t.teardown(() => up.close());
    const big = randomBytesSeeded(BLOB_SIZE, 300);
    const digest = up.addBlob(big);
    const small = up.addBlob(randomBytesSeeded(256 * 1024, 301));

    const root = await mkdtemp(join(tmpdir(), 'oci-stalled-readers-'));
    t.teardown(() => rm(root, { recursive: true, force: true }));
    const mirror = await startMirrorProcess({
      root,
      startTimeoutMs: 60_000,
      configYaml: `- namespace: "${up.host}"\n  host: "${up.host}"\n  tls: false\n`,
      // Memory is measured here, not the send timeout (through the environment: a build without the
      // flag still runs, for a before/after comparison).
      env: { SEND_TIMEOUT: '10m' },
    });
    t.teardown(() => mirror.kill());
    const path = (d: string) => `/v2/library/big/blobs/${d}?ns=${up.host}`;

    // Cache the blob (one pull through the mirror), then warm the cached path up with a full read.
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`${mirror.url}${path(digest)}`, { signal: AbortSignal.timeout(300_000) });
      t.equal(res.status, 200, `pull ${i + 1}`);
      t.equal(sha256(Buffer.from(await res.arrayBuffer())), digest, `pull ${i + 1} hashes to the digest`);
      if (i === 0)
        await eventually(async () => (await listFiles(join(root, 'blobs'))).some((f) => f.endsWith(digest.slice(7))), 120_000, 50);
    }
    t.equal(up.blobGets(digest), 1, 'the blob came from upstream once: the stalled clients read the cache');
    const warm = await fetch(`${mirror.url}${path(small)}`);
    await warm.arrayBuffer();

    await sleep(500);
    const idle: number[] = [];
    for (let i = 0; i < 5; i++) {
      await sleep(100);
      const m = await memoryOf(mirror.pid);
      if (m) idle.push(m.rss);
    }
    t.equal(idle.length, 5, 'the mirror child process exposes /proc/<pid>/status');
    const baseline = idle.sort((a, b) => a - b)[2] ?? 0;
    const hwmReset = await writeFile(`/proc/${mirror.pid}/clear_refs`, '5').then(
      () => true,
      () => false,
    );
    let peak = baseline;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const m = await memoryOf(mirror.pid);
        if (m) peak = Math.max(peak, m.rss);
        await sleep(25);
      }
    })();

    const clients: RawGet[] = [];
    t.teardown(() => clients.forEach((c) => c.socket.destroy()));
    // In batches: the listen backlog and two shared cores.
    for (let i = 0; i < CLIENTS; i += 50) {
      const batch: RawGet[] = [];
      for (let j = i; j < Math.min(CLIENTS, i + 50); j++) batch.push(rawGet(mirror.port, path(digest)));
      clients.push(...batch);
      const heads = await Promise.all(batch.map((c) => c.head));
      t.ok(
        heads.every((h) => h.status === 200),
        `clients ${i + 1}-${i + batch.length}: 200`,
      );
    }
    // Each response runs until its write stalls; then the memory it holds is what it keeps.
    let last = 0;
    let steady = 0;
    for (let i = 0; i < 60 && steady < 3; i++) {
      await sleep(1000);
      const rss = (await memoryOf(mirror.pid))?.rss ?? 0;
      steady = Math.abs(rss - last) < 2 * MiB ? steady + 1 : 0;
      last = rss;
    }
    sampling = false;
    await sampler;
    const after = await memoryOf(mirror.pid);
    const open = clients.filter((c) => !c.socket.destroyed).length;
    t.equal(open, CLIENTS, 'every stalled connection is still open (the send timeout is 10 minutes here)');
    const top = hwmReset && after ? Math.max(peak, after.hwm) : peak;
    const growth = top - baseline;
    const summary =
      `mirror RSS with ${CLIENTS} stalled readers: baseline ${mib(baseline)}, peak ${mib(top)} ` +
      `(sampled ${mib(peak)}, VmHWM ${hwmReset && after ? mib(after.hwm) : 'not reset: not used'}), growth ${mib(growth)}; ` +
      `now ${mib(after?.rss ?? 0)}`;
    t.comment(summary);
    process.stderr.write(`# ${summary}\n`);
    t.ok(growth <= MAX_GROWTH, `RSS growth ${mib(growth)} <= ${mib(MAX_GROWTH)}`);

    // The stalled responses are intact: one of them, read now, is the whole blob.
    const one = clients[0] as RawGet;
    one.readAll();
    await eventually(() => one.bodyBytes >= BLOB_SIZE, 120_000, 50);
    t.equal(one.bodyBytes, BLOB_SIZE, 'a stalled client that reads again gets every byte');
    t.equal(one.bodyDigest(), digest, 'and they hash to the digest');
  },
);
