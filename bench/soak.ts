/**
 * Soak test: the mirror CLI (child process, filesystem cache) in front of the fault-injecting fixture
 * registry, under ~16 concurrent workers of mixed pull traffic for SOAK_SECONDS (default 600), while the
 * upstream misbehaves on a schedule (connection resets, 503 and 429 bursts, going down and coming back).
 *
 *   SOAK_SECONDS=60 node --import @tapjs/typescript/import bench/soak.ts
 *
 * Env: SOAK_SECONDS (600), SOAK_WORKERS (16), SOAK_REPORT_SECONDS (30), SOAK_LAYER_MIB (20).
 * Prints a report every SOAK_REPORT_SECONDS (requests, errors by kind, p50/p99 latency, mirror RSS), then
 * a summary and an integrity check of every stored blob. Exits 1 when a client received a complete body
 * with the wrong digest, the mirror answered 500, a request hung, a stored object is corrupt, or tmp/ is
 * not empty at the end; upstream-caused errors during injected faults are expected and only counted.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytesSeeded, sha256 } from '../test/fixtures/content.js';
import { startFixtureUpstream, type AddedImage } from '../test/fixtures/upstream.js';
import { startMirrorProcess } from '../test/helpers/mirror-process.js';

const MiB = 1024 * 1024;
const SECONDS = Number(process.env['SOAK_SECONDS'] ?? 600);
const WORKERS = Number(process.env['SOAK_WORKERS'] ?? 16);
const REPORT_SECONDS = Number(process.env['SOAK_REPORT_SECONDS'] ?? 30);
const LAYER_MIB = Number(process.env['SOAK_LAYER_MIB'] ?? 20);
const REQUEST_TIMEOUT_MS = 120_000;
const OCI_ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json';

interface Image {
  repo: string;
  tag: string;
  added: AddedImage;
  /** Layer digests of this image (config excluded). */
  layers: string[];
}

// ---------------------------------------------------------------------------------------------- stats

type Kind = string;
class Stats {
  requests = 0;
  ok = 0;
  errors = new Map<Kind, number>();
  latencies: number[] = [];
  bytes = 0;

  record(ms: number, error: Kind | undefined, bytes: number): void {
    this.requests++;
    this.bytes += bytes;
    this.latencies.push(ms);
    if (error === undefined) this.ok++;
    else this.errors.set(error, (this.errors.get(error) ?? 0) + 1);
  }

  merge(other: Stats): void {
    this.requests += other.requests;
    this.ok += other.ok;
    this.bytes += other.bytes;
    for (const [k, v] of other.errors) this.errors.set(k, (this.errors.get(k) ?? 0) + v);
    for (const l of other.latencies) this.latencies.push(l);
  }
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

/** Errors that mean the mirror is wrong, whatever the upstream did. */
const FATAL = new Set(['digest-mismatch', 'range-mismatch', 'http-500', 'hang', 'manifest-mismatch']);

// ---------------------------------------------------------------------------------------------- main

async function main(): Promise<void> {
  const started = Date.now();
  const deadline = started + SECONDS * 1000;
  const log = (msg: string) => process.stdout.write(`[soak +${((Date.now() - started) / 1000).toFixed(0).padStart(4)}s] ${msg}\n`);

  const up = await startFixtureUpstream();
  const blobs = new Map<string, Buffer>();
  const images: Image[] = [];
  let seed = 1000;
  const addImage = (repo: string, tag: string, sizes: number[]): Image => {
    const layers = sizes.map((s) => randomBytesSeeded(s, seed++));
    const added = up.addImage(repo, { tag, layers });
    layers.forEach((l, i) => blobs.set(added.layerDigests[i] as string, l));
    const image = { repo, tag, added, layers: added.layerDigests };
    images.push(image);
    return image;
  };
  addImage('library/small', 'latest', [4 * 1024, 60 * 1024]);
  addImage('library/small', 'v2', [8 * 1024]);
  addImage('team/app', 'latest', [LAYER_MIB * MiB, 512 * 1024]);
  addImage('team/app', 'v1', [LAYER_MIB * MiB]);
  addImage('org/team/tool', '1.0', [2 * MiB, 100 * 1024, 300]);

  const root = await mkdtemp(join(tmpdir(), 'oci-soak-'));
  const proc = await startMirrorProcess({
    root,
    startTimeoutMs: 120_000,
    configYaml: [
      `- namespace: "${up.host}"`,
      `  host: "${up.host}"`,
      '  tls: false',
      '  manifest_invalidation_time: 5s',
      '  blob_invalidation_time: 60s',
      '  connect_timeout: 2s',
      '  read_timeout: 5s',
      '',
    ].join('\n'),
  });
  // The child logs a JSON line per request; keep only the last few for the summary.
  const logKeep = 2000;
  // Warnings and errors of the mirror (level >= 40), the most recent 200, for the summary of a failed run.
  const mirrorWarnings: string[] = [];
  let scanned = 0;
  const trimLogs = setInterval(() => {
    for (const line of proc.logLines.slice(scanned)) {
      if (/"level":(4|5|6)0/.test(line)) mirrorWarnings.push(line.slice(0, 400));
    }
    if (mirrorWarnings.length > 200) mirrorWarnings.splice(0, mirrorWarnings.length - 200);
    scanned = proc.logLines.length;
    if (proc.logLines.length > logKeep * 2) {
      const drop = proc.logLines.length - logKeep;
      proc.logLines.splice(0, drop);
      scanned -= drop;
    }
  }, 1000);
  log(`mirror pid ${proc.pid} at ${proc.url}, cache ${root}; fixture ${up.url}; ${WORKERS} workers for ${SECONDS} s`);
  const url = (path: string) => `${proc.url}/v2/${path}${path.includes('?') ? '&' : '?'}ns=${up.host}`;

  // ------------------------------------------------------------------ memory sampling
  let rss = 0;
  let peakRss = 0;
  const sampleMemory = async () => {
    try {
      const status = await readFile(`/proc/${proc.pid}/status`, 'utf8');
      rss = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) * 1024;
      peakRss = Math.max(peakRss, rss);
    } catch {
      // process gone
    }
  };
  const memTimer = setInterval(() => void sampleMemory(), 1000);
  await sampleMemory();
  const startRss = rss;

  // ------------------------------------------------------------------ faults
  let faultNote = 'none';
  const faultEvents: string[] = [];
  const noteFault = (s: string) => {
    faultNote = s;
    faultEvents.push(`+${((Date.now() - started) / 1000).toFixed(0)}s ${s}`);
  };
  let coldCounter = 0;
  const coldImages: Image[] = [];
  const coldBurst: { img: Image; remaining: number }[] = [];
  const faultLoop = (async () => {
    let tick = 0;
    while (Date.now() < deadline) {
      await sleep(1000);
      tick++;
      const phase = tick % 60;
      if (phase === 8) {
        noteFault('upstream down');
        await up.stop();
      } else if (phase === 12) {
        await up.start();
        noteFault('upstream back');
      } else if (phase === 20) {
        up.setGlobalFault({ kind: 'status', status: 503, times: 60 });
        noteFault('503 burst (60 requests)');
      } else if (phase === 32) {
        up.setGlobalFault({ kind: 'status', status: 429, headers: { 'Retry-After': '1' }, times: 40 });
        noteFault('429 burst (40 requests)');
      } else if (phase === 44) {
        // A stalled body on the next download of every blob not cached yet.
        up.setGlobalFault({ kind: 'stall', ms: 8000, times: 3 });
        noteFault('3 upstream requests stall 8 s (read_timeout 5s)');
      }
      if (tick % 15 === 0 && Date.now() < deadline - 10_000) {
        // A new image appears upstream; a burst of workers pulls it cold, concurrently. Its big layer's
        // first download misbehaves in turn: slow, reset mid-body, truncated, wrong digest, or fine.
        const img = addImage(`cold/img${coldCounter}`, 'latest', [LAYER_MIB * MiB, 64 * 1024]);
        const big = img.layers[0] as string;
        const faults = [
          { kind: 'slow', chunkSize: MiB, delayMs: 30, times: 1 },
          { kind: 'reset', afterBytes: 3 * MiB, times: 1 },
          { kind: 'truncate', afterBytes: 5 * MiB, times: 1 },
          { kind: 'wrong-digest', times: 1 },
          undefined,
        ] as const;
        const fault = faults[coldCounter % faults.length];
        up.setBlobFault(big, fault ? { ...fault } : undefined);
        noteFault(`cold image ${coldCounter} (${fault?.kind ?? 'no fault'} on its ${LAYER_MIB} MiB layer)`);
        coldCounter++;
        coldImages.push(img);
        coldBurst.push({ img, remaining: Math.max(2, Math.floor(WORKERS / 2)) });
      }
    }
  })();

  // ------------------------------------------------------------------ workers
  let interval = new Stats();
  const total = new Stats();
  const fatalSamples: string[] = [];
  const pick = <T>(xs: T[]): T => xs[Math.floor(Math.random() * xs.length)] as T;

  const timedFetch = async (
    path: string,
    init: { method?: string; headers?: Record<string, string> },
    check: (res: Response, body: Buffer | undefined) => Kind | undefined,
    readBody = true,
  ): Promise<void> => {
    const t0 = performance.now();
    let error: Kind | undefined;
    let bytes = 0;
    try {
      const res = await fetch(url(path), { ...init, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
      let body: Buffer | undefined;
      if (readBody && init.method !== 'HEAD') {
        try {
          body = Buffer.from(await res.arrayBuffer());
          bytes = body.length;
        } catch (e) {
          error = (e as Error).name === 'TimeoutError' ? 'hang' : 'body-cut';
        }
      } else {
        await res.body?.cancel();
      }
      if (error === undefined) {
        if (res.status === 500) error = 'http-500';
        else if (res.status >= 400) error = `http-${res.status}`;
        else error = check(res, body);
      }
    } catch (e) {
      const name = (e as Error).name;
      error = name === 'TimeoutError' ? 'hang' : 'connect-error';
    }
    const ms = performance.now() - t0;
    interval.record(ms, error, bytes);
    if (error && FATAL.has(error) && fatalSamples.length < 50) fatalSamples.push(`${error}: ${init.method ?? 'GET'} ${path}`);
  };

  const ops: { weight: number; run: () => Promise<void> }[] = [
    {
      weight: 20,
      run: async () => {
        const img = pick(images);
        const method = Math.random() < 0.3 ? 'HEAD' : 'GET';
        await timedFetch(`${img.repo}/manifests/${img.tag}`, { method, headers: { accept: OCI_ACCEPT } }, (res, body) => {
          const digest = res.headers.get('docker-content-digest');
          if (!digest) return 'no-digest-header';
          // A tag may legitimately be served stale; by-tag bytes must still match the digest header.
          if (body && sha256(body) !== digest) return 'manifest-mismatch';
          return undefined;
        });
      },
    },
    {
      weight: 10,
      run: async () => {
        const img = pick(images);
        await timedFetch(`${img.repo}/manifests/${img.added.digest}`, { headers: { accept: OCI_ACCEPT } }, (_res, body) =>
          body && !body.equals(img.added.bytes) ? 'manifest-mismatch' : undefined,
        );
      },
    },
    {
      weight: 35,
      run: async () => {
        const img = pick(images);
        const d = pick(img.layers);
        await timedFetch(`${img.repo}/blobs/${d}`, {}, (_res, body) => (body && sha256(body) !== d ? 'digest-mismatch' : undefined));
      },
    },
    {
      weight: 15,
      run: async () => {
        const img = pick(images);
        const d = pick(img.layers);
        const bytes = blobs.get(d) as Buffer;
        const start = Math.floor(Math.random() * bytes.length);
        const end = Math.min(bytes.length - 1, start + Math.floor(Math.random() * 2 * MiB));
        await timedFetch(`${img.repo}/blobs/${d}`, { headers: { range: `bytes=${start}-${end}` } }, (res, body) => {
          if (res.status !== 206) return `range-status-${res.status}`;
          return body && !body.equals(bytes.subarray(start, end + 1)) ? 'range-mismatch' : undefined;
        });
      },
    },
    {
      weight: 5,
      run: async () => {
        const img = pick(images);
        await timedFetch(`${img.repo}/tags/list`, {}, (_res, body) => {
          try {
            const doc = JSON.parse((body ?? Buffer.alloc(0)).toString('utf8')) as { tags?: unknown };
            return Array.isArray(doc.tags) ? undefined : 'bad-tag-list';
          } catch {
            return 'bad-tag-list';
          }
        });
      },
    },
  ];
  const totalWeight = ops.reduce((a, o) => a + o.weight, 0);
  const worker = async (id: number) => {
    while (Date.now() < deadline) {
      const burst = coldBurst[0];
      if (burst && id % 2 === 0) {
        // Half of the workers join the cold pull of the newest image, all at once.
        if (--burst.remaining <= 0) coldBurst.shift();
        const cold = burst.img;
        const d = cold.layers[0] as string;
        await timedFetch(`${cold.repo}/blobs/${d}`, {}, (_res, body) => (body && sha256(body) !== d ? 'digest-mismatch' : undefined));
        continue;
      }
      let r = Math.random() * totalWeight;
      for (const op of ops) {
        r -= op.weight;
        if (r <= 0) {
          await op.run();
          break;
        }
      }
    }
  };

  // ------------------------------------------------------------------ reporting
  const report = (label: string, s: Stats) => {
    const sorted = [...s.latencies].sort((a, b) => a - b);
    const errors =
      [...s.errors]
        .sort((a, b) => b[1] - a[1])
        .map(([k, v]) => `${k}=${v}`)
        .join(' ') || 'none';
    log(
      `${label}: ${s.requests} requests (${s.ok} ok), ${(s.bytes / MiB).toFixed(0)} MiB, p50 ${percentile(sorted, 50).toFixed(0)} ms, ` +
        `p99 ${percentile(sorted, 99).toFixed(0)} ms, errors: ${errors}; mirror RSS ${(rss / MiB).toFixed(0)} MiB (peak ${(peakRss / MiB).toFixed(0)} MiB); last fault: ${faultNote}`,
    );
  };
  const reporter = setInterval(() => {
    const s = interval;
    interval = new Stats();
    total.merge(s);
    report(`last ${REPORT_SECONDS}s`, s);
  }, REPORT_SECONDS * 1000);

  await Promise.all(Array.from({ length: WORKERS }, (_, i) => worker(i)));
  await faultLoop;
  clearInterval(reporter);
  total.merge(interval);

  // ------------------------------------------------------------------ quiesce and verify
  up.setGlobalFault(undefined);
  for (const d of blobs.keys()) up.setBlobFault(d, undefined);
  await up.start();
  // Every blob once more through the mirror, now that the upstream behaves: each must arrive intact.
  let finalFailures = 0;
  for (const img of images) {
    for (const d of img.layers) {
      const res = await fetch(url(`${img.repo}/blobs/${d}`), { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) }).catch(() => undefined);
      const body = res && res.status === 200 ? Buffer.from(await res.arrayBuffer().catch(() => new ArrayBuffer(0))) : undefined;
      if (!body || sha256(body) !== d) {
        finalFailures++;
        log(`final pull of ${img.repo}@${d.slice(0, 19)} failed (status ${res?.status ?? 'none'})`);
      }
    }
  }
  // Running fills finish before tmp/ empties.
  let tmpLeft: string[] = [];
  for (let i = 0; i < 60; i++) {
    tmpLeft = await listFiles(join(root, 'tmp'));
    if (tmpLeft.length === 0) break;
    await sleep(500);
  }
  const stored = await listFiles(join(root, 'blobs'));
  const corrupt: string[] = [];
  const unknown: string[] = [];
  for (const f of stored) {
    const hex = f.split('/').pop() ?? '';
    const h = createHash('sha256');
    for await (const c of createReadStream(f)) h.update(c as Buffer);
    if (h.digest('hex') !== hex) corrupt.push(f);
    if (!blobs.has(`sha256:${hex}`) && !images.some((i) => i.added.configDigest === `sha256:${hex}`)) unknown.push(f);
  }
  const manifests = await listFiles(join(root, 'manifests'));
  for (const f of manifests) {
    const data = await readFile(f);
    const nl = data.indexOf(0x0a);
    if (
      nl < 0 ||
      createHash('sha256')
        .update(data.subarray(nl + 1))
        .digest('hex') !== f.split('/').pop()
    )
      corrupt.push(f);
  }
  await sampleMemory();
  clearInterval(memTimer);
  clearInterval(trimLogs);

  // Upstream downloads per cold layer: 1 means every concurrent puller shared one fill.
  const coldGets = coldImages.map((i) => up.blobGets(i.layers[0] as string));

  report('TOTAL', total);
  const fatal = [...total.errors].filter(([k]) => FATAL.has(k));
  const summary = {
    seconds: SECONDS,
    workers: WORKERS,
    requests: total.requests,
    ok: total.requests - [...total.errors.values()].reduce((a, b) => a + b, 0),
    errorsByKind: Object.fromEntries([...total.errors].sort((a, b) => b[1] - a[1])),
    fatalErrors: Object.fromEntries(fatal),
    fatalSamples: fatalSamples.slice(0, 10),
    latencyMs: (() => {
      const sorted = [...total.latencies].sort((a, b) => a - b);
      return {
        p50: Math.round(percentile(sorted, 50)),
        p90: Math.round(percentile(sorted, 90)),
        p99: Math.round(percentile(sorted, 99)),
        max: Math.round(sorted[sorted.length - 1] ?? 0),
      };
    })(),
    mirrorRssMiB: { start: +(startRss / MiB).toFixed(1), peak: +(peakRss / MiB).toFixed(1), end: +(rss / MiB).toFixed(1) },
    coldImages: coldImages.length,
    upstreamGetsPerColdLayer: coldGets,
    faults: faultEvents.length,
    integrity: {
      storedBlobs: stored.length,
      storedManifests: manifests.length,
      corrupt,
      unknownBlobs: unknown,
      tmpLeft,
      finalPullFailures: finalFailures,
    },
  };
  process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  const failed = fatal.length > 0 || corrupt.length > 0 || tmpLeft.length > 0 || finalFailures > 0 || unknown.length > 0;
  if (failed) {
    const errorLines = mirrorWarnings.filter((l) => /"level":(5|6)0|request failed/.test(l));
    process.stdout.write(
      `mirror errors (last ${Math.min(20, errorLines.length)} of ${errorLines.length}):\n${errorLines.slice(-20).join('\n')}\n`,
    );
  }
  log(failed ? 'SOAK FAILED' : 'SOAK PASSED');

  await proc.stop();
  await up.close();
  await rm(root, { recursive: true, force: true });
  process.exitCode = failed ? 1 : 0;
}

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else out.push(p);
    }
  };
  await walk(dir);
  return out;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

main().catch((e: unknown) => {
  process.stderr.write(`soak: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(2);
});
