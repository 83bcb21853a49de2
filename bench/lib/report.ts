/** Turns the collected samples into markdown tables (and the JSON next to them). */
import type { RateResult } from './measure.js';
import { GiB, MiB, stat, type Stat } from './util.js';

export interface WarmSample {
  gibPerSecond: number;
  clientCores: number;
  failures: string[];
}

export interface PeerResult {
  id: string;
  label: string;
  skipped?: string;
  errors: string[];
  /** Warn/error log lines of the peer's processes (first few). */
  logs: string[];
  cold: { seq: number[]; par: number[]; big: number[]; bigUpstreamGets: number[]; bigCpu: number[] };
  warm: { c1: WarmSample[]; c8: WarmSample[]; cpuPerGiB: number[]; cpuPerGiBC1: number[]; cpuPerGiBC8: number[]; auxCpuPerGiB: number[] };
  manifest: { tag: RateResult[]; digest: RateResult[]; head: RateResult[]; upstreamManifestRequests: number[]; upstreamPings: number[] };
  herd: { downloads: number[]; wallSeconds: number[]; upstreamMiB: number[]; failures: string[]; cpuPerGiB: number[] };
  rss: { idle: number[]; peak: number[]; after: number[] };
  seconds: number;
}

export function emptyResult(id: string, label: string): PeerResult {
  return {
    id,
    label,
    errors: [],
    logs: [],
    cold: { seq: [], par: [], big: [], bigUpstreamGets: [], bigCpu: [] },
    warm: { c1: [], c8: [], cpuPerGiB: [], cpuPerGiBC1: [], cpuPerGiBC8: [], auxCpuPerGiB: [] },
    manifest: { tag: [], digest: [], head: [], upstreamManifestRequests: [], upstreamPings: [] },
    herd: { downloads: [], wallSeconds: [], upstreamMiB: [], failures: [], cpuPerGiB: [] },
    rss: { idle: [], peak: [], after: [] },
    seconds: 0,
  };
}

export interface RunInfo {
  date: string;
  command: string;
  mode: 'quick' | 'full';
  reps: number;
  machine: Record<string, string>;
  sizes: {
    smallLayers: number;
    smallLayerBytes: number;
    bigBytes: number;
    warmFetchesPerClient1: number;
    herdClients: number;
    rateSeconds: number;
  };
  totalSeconds: number;
  notes: string[];
}

function num(v: number, digits: number): string {
  if (!Number.isFinite(v)) return '–';
  return v.toFixed(digits);
}

function cell(s: Stat | undefined, digits: number, scale = 1): string {
  if (!s) return '–';
  if (s.n === 1) return num(s.median * scale, digits);
  return `${num(s.median * scale, digits)} (${num(s.min * scale, digits)}–${num(s.max * scale, digits)})`;
}

function ratio(a: Stat | undefined, b: Stat | undefined): number {
  return a && b && b.median !== 0 ? a.median / b.median : NaN;
}

function withRatio(s: Stat | undefined, ref: Stat | undefined, digits: number, scale = 1): string {
  const r = ratio(s, ref);
  return Number.isFinite(r) ? `${cell(s, digits, scale)} **×${r.toFixed(2)}**` : cell(s, digits, scale);
}

function table(header: string[], rows: string[][]): string {
  const out = [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`];
  for (const r of rows) out.push(`| ${r.join(' | ')} |`);
  return out.join('\n');
}

const rate = (rs: RateResult[], f: (r: RateResult) => number) => stat(rs.map(f));

export interface Derived {
  seq?: Stat;
  par?: Stat;
  big?: Stat;
  c1?: Stat;
  c8?: Stat;
  cpu?: Stat;
  tagRps?: Stat;
  tagP99?: Stat;
  digestRps?: Stat;
  digestP99?: Stat;
  headRps?: Stat;
  headP99?: Stat;
  herd?: Stat;
  herdWall?: Stat;
  idle?: Stat;
  peak?: Stat;
  after?: Stat;
}

export function derive(r: PeerResult): Derived {
  return {
    seq: stat(r.cold.seq),
    par: stat(r.cold.par),
    big: stat(r.cold.big),
    c1: stat(r.warm.c1.map((w) => w.gibPerSecond)),
    c8: stat(r.warm.c8.map((w) => w.gibPerSecond)),
    cpu: stat(r.warm.cpuPerGiB),
    tagRps: rate(r.manifest.tag, (x) => x.rps),
    tagP99: rate(r.manifest.tag, (x) => x.p99ms),
    digestRps: rate(r.manifest.digest, (x) => x.rps),
    digestP99: rate(r.manifest.digest, (x) => x.p99ms),
    headRps: rate(r.manifest.head, (x) => x.rps),
    headP99: rate(r.manifest.head, (x) => x.p99ms),
    herd: stat(r.herd.downloads),
    herdWall: stat(r.herd.wallSeconds),
    idle: stat(r.rss.idle),
    peak: stat(r.rss.peak),
    after: stat(r.rss.after),
  };
}

/** Targets for our mirror (filesystem backend) against the references. */
function targets(results: PeerResult[], d: Map<string, Derived>): string[][] {
  const rows: string[][] = [];
  const fsd = d.get('mirror-fs');
  if (!fsd) return rows;
  const st = d.get('nginx-static');
  const direct = d.get('direct');
  // The stronger of the two distribution set-ups, per metric (conservative for our targets).
  const dists = ['distribution', 'distribution-auth'].filter((id) => d.has(id));
  const label = (id: string) => (id === 'distribution-auth' ? 'distribution (auth upstream)' : 'distribution');
  const best = (f: (x: Derived) => Stat | undefined, higherIsBetter: boolean): { s: Stat | undefined; id: string } => {
    let pick: { s: Stat | undefined; id: string } = { s: undefined, id: '' };
    for (const id of dists) {
      const v = f(d.get(id)!);
      if (!v) continue;
      if (!pick.s || (higherIsBetter ? v.median > pick.s.median : v.median < pick.s.median)) pick = { s: v, id };
    }
    return pick;
  };
  const mark = (ok: boolean | undefined) => (ok === undefined ? 'n/a' : ok ? 'PASS' : '**MISS**');
  const cmp = (a: Stat | undefined, b: Stat | undefined, want: (r: number) => boolean): boolean | undefined => {
    const r = ratio(a, b);
    return Number.isFinite(r) ? want(r) : undefined;
  };
  const rr = (a: Stat | undefined, b: Stat | undefined) => {
    const r = ratio(a, b);
    return Number.isFinite(r) ? `×${r.toFixed(2)}` : '–';
  };
  rows.push([
    'warm blob, 1 client ≥ 0.9× nginx static',
    `${cell(fsd.c1, 2)} vs ${cell(st?.c1, 2)} GiB/s: ${rr(fsd.c1, st?.c1)}`,
    mark(cmp(fsd.c1, st?.c1, (r) => r >= 0.9)),
  ]);
  rows.push([
    'warm blob, 8 clients ≥ 0.9× nginx static',
    `${cell(fsd.c8, 2)} vs ${cell(st?.c8, 2)} GiB/s: ${rr(fsd.c8, st?.c8)}`,
    mark(cmp(fsd.c8, st?.c8, (r) => r >= 0.9)),
  ]);
  for (const [name, rpsF, p99F] of [
    ['manifest GET by tag', (x: Derived) => x.tagRps, (x: Derived) => x.tagP99],
    ['manifest GET by digest', (x: Derived) => x.digestRps, (x: Derived) => x.digestP99],
    ['manifest HEAD by tag', (x: Derived) => x.headRps, (x: Derived) => x.headP99],
  ] as const) {
    const bRps = best(rpsF, true);
    const bP99 = best(p99F, false);
    const okRps = cmp(rpsF(fsd), bRps.s, (r) => r >= 2);
    const okP99 = cmp(p99F(fsd), bP99.s, (r) => r < 1);
    rows.push([
      `${name} ≥ 2× distribution rps, lower p99`,
      `rps ${cell(rpsF(fsd), 0)} vs ${cell(bRps.s, 0)} (${label(bRps.id)}): ${rr(rpsF(fsd), bRps.s)}; p99 ${cell(p99F(fsd), 2)} vs ${cell(bP99.s, 2)} ms: ${rr(p99F(fsd), bP99.s)}`,
      mark(okRps === undefined || okP99 === undefined ? undefined : okRps && okP99),
    ]);
  }
  rows.push([
    'cold pull, small image sequential ≤ 1.05× direct',
    `${cell(fsd.seq, 3)} vs ${cell(direct?.seq, 3)} s: ${rr(fsd.seq, direct?.seq)}`,
    mark(cmp(fsd.seq, direct?.seq, (r) => r <= 1.05)),
  ]);
  rows.push([
    'cold pull, small image 4 parallel ≤ 1.05× direct',
    `${cell(fsd.par, 3)} vs ${cell(direct?.par, 3)} s: ${rr(fsd.par, direct?.par)}`,
    mark(cmp(fsd.par, direct?.par, (r) => r <= 1.05)),
  ]);
  rows.push([
    'cold pull, big layer ≤ 1.05× direct',
    `${cell(fsd.big, 2)} vs ${cell(direct?.big, 2)} s: ${rr(fsd.big, direct?.big)}`,
    mark(cmp(fsd.big, direct?.big, (r) => r <= 1.05)),
  ]);
  const herdAll = results.find((r) => r.id === 'mirror-fs')?.herd.downloads ?? [];
  rows.push([
    'herd: 32 concurrent GETs → 1 upstream download',
    herdAll.length ? `${herdAll.join(', ')} download(s)` : '–',
    mark(herdAll.length ? herdAll.every((n) => n === 1) : undefined),
  ]);
  const bPeak = best((x) => x.peak, false);
  rows.push([
    'peak RSS below distribution',
    fsd.peak && bPeak.s ? `${num(fsd.peak.median / MiB, 0)} vs ${num(bPeak.s.median / MiB, 0)} MiB (${label(bPeak.id)})` : '–',
    mark(cmp(fsd.peak, bPeak.s, (r) => r < 1)),
  ]);
  const bCpu = best((x) => x.cpu, false);
  rows.push([
    'CPU s/GiB served warm ≤ distribution',
    fsd.cpu && bCpu.s ? `${num(fsd.cpu.median, 2)} vs ${num(bCpu.s.median, 2)} (${label(bCpu.id)})` : '–',
    mark(cmp(fsd.cpu, bCpu.s, (r) => r <= 1)),
  ]);
  return rows;
}

/**
 * Issue #14's cost targets for our mirror (filesystem backend), each beside what the bare Node proxy
 * (node-floor: hash, forward, store, no policy) measures for the same thing in the same run.
 */
function costTargets(results: PeerResult[], d: Map<string, Derived>): string[][] {
  const rows: string[][] = [];
  const fsd = d.get('mirror-fs');
  const fsr = results.find((r) => r.id === 'mirror-fs');
  if (!fsd || !fsr) return rows;
  const direct = d.get('direct');
  const floor = d.get('node-floor');
  const floorR = results.find((r) => r.id === 'node-floor' && !r.skipped);
  const nginx = d.get('nginx-cache');
  const dist = d.get('distribution');
  const mark = (v: number, ok: (v: number) => boolean) => (Number.isFinite(v) ? (ok(v) ? 'PASS' : '**MISS**') : 'n/a');
  const x = (v: number) => (Number.isFinite(v) ? `×${v.toFixed(2)}` : '–');
  const bigCpu = stat(fsr.cold.bigCpu);
  const floorBigCpu = floorR ? stat(floorR.cold.bigCpu) : undefined;
  rows.push([
    'CPU of one cold big-layer pull ≤ 0.7 s',
    `${cell(bigCpu, 2)} s`,
    floorBigCpu ? `${cell(floorBigCpu, 2)} s` : '–',
    mark(bigCpu?.median ?? NaN, (v) => v <= 0.7),
  ]);
  const coldRows: Array<[string, (y: Derived) => Stat | undefined, number]> = [
    ['cold big layer ≤ 1.4× direct', (y) => y.big, 1.4],
    ['cold 20 layers sequential ≤ 1.05× direct', (y) => y.seq, 1.05],
    ['cold 20 layers 4 parallel ≤ 1.05× direct', (y) => y.par, 1.05],
  ];
  for (const [name, f, bound] of coldRows) {
    const r = ratio(f(fsd), direct && f(direct));
    rows.push([name, x(r), floor ? x(ratio(f(floor), direct && f(direct))) : '–', mark(r, (v) => v <= bound)]);
  }
  const manifestRows: Array<[string, (y: Derived) => Stat | undefined, (y: Derived) => Stat | undefined]> = [
    ['manifest GET by tag', (y) => y.tagRps, (y) => y.tagP99],
    ['manifest GET by digest', (y) => y.digestRps, (y) => y.digestP99],
    ['manifest HEAD by tag', (y) => y.headRps, (y) => y.headP99],
  ];
  for (const [name, rps, p99] of manifestRows) {
    const r = ratio(rps(fsd), nginx && rps(nginx));
    const p = (y: Derived | undefined) => {
      const a = y && p99(y);
      const b = nginx && p99(nginx);
      return a && b ? a.median - b.median : NaN;
    };
    const lat = p(fsd);
    const sign = (v: number) => (Number.isFinite(v) ? `${v >= 0 ? '+' : ''}${v.toFixed(2)} ms` : '–');
    rows.push([
      `${name} ≥ 0.5× nginx proxy_cache rps, p99 ≤ nginx's + 2 ms`,
      `${x(r)}, p99 ${sign(lat)}`,
      floor ? `${x(ratio(rps(floor), nginx && rps(nginx)))}, p99 ${sign(p(floor))}` : '–',
      mark(r, (v) => v >= 0.5 && lat <= 2),
    ]);
  }
  const mib = (v: Stat | undefined) => (v ? `${num(v.median / MiB, 0)} MiB` : '–');
  rows.push(['idle RSS ≤ 64 MiB', mib(fsd.idle), mib(floor?.idle), mark((fsd.idle?.median ?? NaN) / MiB, (v) => v <= 64)]);
  rows.push([
    "peak RSS ≤ distribution's",
    `${mib(fsd.peak)} vs ${mib(dist?.peak)}`,
    mib(floor?.peak),
    mark(ratio(fsd.peak, dist?.peak), (v) => v <= 1),
  ]);
  const herdCpu = stat(fsr.herd.cpuPerGiB);
  rows.push([
    'herd CPU ≤ 0.6 s per GiB served',
    `${cell(herdCpu, 2)} s/GiB`,
    '– (no herd test)',
    mark(herdCpu?.median ?? NaN, (v) => v <= 0.6),
  ]);
  return rows;
}

export function renderMarkdown(info: RunInfo, results: PeerResult[]): string {
  const d = new Map(results.filter((r) => !r.skipped).map((r) => [r.id, derive(r)]));
  const direct = d.get('direct');
  const st = d.get('nginx-static');
  const active = results.filter((r) => !r.skipped);
  const has = (f: (x: Derived) => Stat | undefined) => active.filter((r) => f(d.get(r.id)!) !== undefined);
  const s = info.sizes;
  const out: string[] = [];
  out.push(`# oci-registry benchmark, ${info.date}`);
  out.push('');
  out.push(
    `Command: \`${info.command}\` (${info.mode} mode, ${info.reps} repetition${info.reps === 1 ? '' : 's'}, ${Math.round(info.totalSeconds)} s in all)`,
  );
  out.push('');
  out.push(
    Object.entries(info.machine)
      .map(([k, v]) => `- ${k}: ${v}`)
      .join('\n'),
  );
  out.push('');
  out.push(
    `Sizes: small image ${s.smallLayers} layers × ${num(s.smallLayerBytes / MiB, 2)} MiB (+ config); big layer ${num(s.bigBytes / MiB, 0)} MiB, random. ` +
      `Cells: median (min–max) over the repetitions; **×r** = ratio of medians to the reference. Every peer instance starts with an empty cache.`,
  );
  out.push('');
  const tg = targets(results, d);
  if (tg.length > 0) {
    out.push('## Targets for oci-registry (filesystem backend)');
    out.push('');
    out.push('Against distribution: the stronger of the two distribution set-ups for each metric.');
    out.push('');
    out.push(table(['target', 'measured', 'status'], tg));
    out.push('');
  }
  const ct = costTargets(results, d);
  if (ct.length > 0) {
    out.push('## Cost targets (issue #14), beside the bare Node proxy');
    out.push('');
    out.push(
      '"floor" is `node-floor` (bench/lib/node-floor.ts): plain node:http and undici that hash, forward and store blobs (fsync, rename) ' +
        'and answer manifests from memory, with no policy at all: what Node costs for the same work in the same run.',
    );
    out.push('');
    out.push(table(['target', 'oci-registry', 'floor', 'status'], ct));
    out.push('');
  }

  const cold = has((x) => x.seq ?? x.big);
  if (cold.length > 0) {
    out.push('## Cold pull (seconds; lower is better; ×r vs direct)');
    out.push('');
    out.push('HEAD tag → GET manifest by digest → config + layers, each body sha256-checked by the client (undici).');
    out.push('');
    out.push(
      table(
        [
          'peer',
          `${s.smallLayers} layers sequential`,
          `${s.smallLayers} layers, 4 parallel`,
          `${num(s.bigBytes / MiB, 0)} MiB layer`,
          'upstream GETs of that layer',
          'peer CPU s for that layer',
        ],
        cold.map((r) => {
          const x = d.get(r.id)!;
          return [
            r.label,
            withRatio(x.seq, direct?.seq, 3),
            withRatio(x.par, direct?.par, 3),
            withRatio(x.big, direct?.big, 2),
            r.cold.bigUpstreamGets.join(', ') || '–',
            cell(stat(r.cold.bigCpu), 2),
          ];
        }),
      ),
    );
    out.push('');
  }

  const warm = has((x) => x.c1 ?? x.c8);
  if (warm.length > 0) {
    out.push(`## Warm ${num(s.bigBytes / MiB, 0)} MiB blob throughput (GiB/s; higher is better; ×r vs nginx static)`);
    out.push('');
    out.push(
      `curl -s -o /dev/null clients: 1 client × ${s.warmFetchesPerClient1} sequential fetches, and 8 clients × 1 fetch at once. ` +
        '"client cores" = CPU used by the curl processes / wall time: near 1.0 for one client means the client, not the server, is the limit (marked †). ' +
        'CPU s/GiB = utime+stime of the peer (all its processes) over both runs / GiB served.',
    );
    out.push('');
    const nproc = Number(info.machine['nproc'] ?? '2');
    const mk = (ws: WarmSample[], clients: number, x: Stat | undefined, ref: Stat | undefined) => {
      const cores = stat(ws.map((w) => w.clientCores));
      const bound = cores && cores.median >= 0.85 * Math.min(clients, nproc) ? ' †' : '';
      return [withRatio(x, ref, 2) + bound, cores ? num(cores.median, 2) : '–'];
    };
    out.push(
      table(
        ['peer', '1 client', 'client cores', '8 clients', 'client cores', 'CPU s/GiB'],
        warm.map((r) => {
          const x = d.get(r.id)!;
          const aux = stat(r.warm.auxCpuPerGiB);
          return [
            r.label,
            ...mk(r.warm.c1, 1, x.c1, st?.c1),
            ...mk(r.warm.c8, 8, x.c8, st?.c8),
            cell(x.cpu, 2) +
              (stat(r.warm.cpuPerGiBC1) && stat(r.warm.cpuPerGiBC8)
                ? ` [1 client ${num(stat(r.warm.cpuPerGiBC1)!.median, 2)}, 8 clients ${num(stat(r.warm.cpuPerGiBC8)!.median, 2)}]`
                : '') +
              (aux ? ` (+${num(aux.median, 2)} s3rver)` : ''),
          ];
        }),
      ),
    );
    out.push('');
  }

  const man = has((x) => x.tagRps ?? x.headRps);
  if (man.length > 0) {
    const dist = d.get('distribution');
    out.push('## Warm manifest requests (requests/s and p99 ms; ×r vs distribution)');
    out.push('');
    out.push(
      `GET: \`wrk -t2 -c32 -d${s.rateSeconds}s --latency -H 'Accept: <docker+OCI manifest types>'\`. ` +
        `HEAD: \`ab -k -i -c32 -t${s.rateSeconds}\` (wrk 4.1 cannot do HEAD; ab is single-threaded, so HEAD numbers are not comparable with GET numbers). ` +
        '"upstream" = requests the upstream saw during the three runs: manifest requests (tag revalidation) and `/v2/` pings. ' +
        'Ratios are to "distribution 2.8 proxy" (anonymous upstream).',
    );
    out.push('');
    out.push(
      table(
        ['peer', 'GET tag rps', 'p99 ms', 'GET digest rps', 'p99 ms', 'HEAD tag rps', 'p99 ms', 'errors', 'upstream'],
        man.map((r) => {
          const x = d.get(r.id)!;
          const errors = [...r.manifest.tag, ...r.manifest.digest, ...r.manifest.head].reduce((a, b) => a + b.errors, 0);
          return [
            r.label,
            withRatio(x.tagRps, dist?.tagRps, 0),
            withRatio(x.tagP99, dist?.tagP99, 2),
            withRatio(x.digestRps, dist?.digestRps, 0),
            withRatio(x.digestP99, dist?.digestP99, 2),
            withRatio(x.headRps, dist?.headRps, 0),
            withRatio(x.headP99, dist?.headP99, 2),
            String(errors),
            r.manifest.upstreamManifestRequests.length
              ? `${cell(stat(r.manifest.upstreamManifestRequests), 0)} manifest, ${cell(stat(r.manifest.upstreamPings), 0)} /v2/`
              : '–',
          ];
        }),
      ),
    );
    out.push('');
  }

  const herd = has((x) => x.herd);
  if (herd.length > 0) {
    out.push(`## Thundering herd: ${s.herdClients} concurrent GETs of one uncached ${num(s.bigBytes / MiB, 0)} MiB blob`);
    out.push('');
    out.push(
      table(
        ['peer', 'upstream downloads', 'MiB from upstream', 'wall s (all clients done)', 'peer CPU s/GiB served', 'failed transfers'],
        herd.map((r) => {
          const x = d.get(r.id)!;
          return [
            r.label,
            cell(x.herd, 0) + ` [${r.herd.downloads.join(', ')}]`,
            cell(stat(r.herd.upstreamMiB), 0),
            cell(x.herdWall, 2),
            cell(stat(r.herd.cpuPerGiB), 2),
            String(r.herd.failures.length),
          ];
        }),
      ),
    );
    out.push('');
  }

  const mem = has((x) => x.peak);
  if (mem.length > 0) {
    out.push("## Memory (MiB; sum over the peer's processes, sampled every 100 ms, VmHWM for single processes)");
    out.push('');
    out.push(
      table(
        ['peer', 'idle RSS (after start)', 'peak RSS', 'RSS after load (1.5 s settle)'],
        mem.map((r) => {
          const x = d.get(r.id)!;
          return [r.label, cell(x.idle, 0, 1 / MiB), cell(x.peak, 0, 1 / MiB), cell(x.after, 0, 1 / MiB)];
        }),
      ),
    );
    out.push('');
  }

  const notes = [...info.notes];
  for (const r of results) {
    if (r.skipped) notes.push(`${r.label}: skipped (${r.skipped})`);
    for (const e of r.errors) notes.push(`${r.label}: ERROR ${e}`);
    if (r.herd.failures.length > 0) notes.push(`${r.label}: herd failures: ${[...new Set(r.herd.failures)].slice(0, 5).join('; ')}`);
    const warmFail = [...r.warm.c1, ...r.warm.c8].flatMap((w) => w.failures);
    if (warmFail.length > 0) notes.push(`${r.label}: warm transfer failures: ${[...new Set(warmFail)].slice(0, 5).join('; ')}`);
    const rateRaw = [...r.manifest.tag, ...r.manifest.digest, ...r.manifest.head].filter((x) => x.errors > 0);
    if (rateRaw.length > 0) notes.push(`${r.label}: ${rateRaw.length} manifest runs had errors (non-2xx or socket errors; see the JSON)`);
    if (r.logs.length > 0)
      notes.push(`${r.label}: ${r.logs.length} warn/error log lines, e.g. \`${r.logs[0]!.slice(0, 300).replace(/`/g, "'")}\``);
    notes.push(`${r.label}: ${Math.round(r.seconds)} s`);
  }
  out.push('## Notes');
  out.push('');
  out.push(notes.map((n) => `- ${n}`).join('\n'));
  out.push('');
  return out.join('\n');
}

export const bytesToGiB = (b: number) => b / GiB;
