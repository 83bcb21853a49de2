/**
 * Benchmark of oci-registry against its peers: CNCF distribution in proxy mode, nginx proxy_cache,
 * nginx serving the blob statically (the warm-throughput reference) and the upstream itself ("direct",
 * the cold-pull reference). All on 127.0.0.1, one peer at a time, against one real upstream
 * (docker-registry) seeded with generated images. Then the cluster scenario (lib/cluster.ts): the herd
 * spread over three replicas, alone and cooperating (--peers).
 *
 *   npm run bench                      # full run (about 10-15 min on 2 cores)
 *   BENCH_QUICK=1 npm run bench        # 1 repetition, small sizes
 *   npm run bench -- --s3              # also the S3 backend against s3rver
 *   npm run bench -- --peers=mirror-fs,distribution --reps=5
 *
 * Environment: BENCH_MIRROR_MAIN (default dist/cli/main.js), BENCH_TMPDIR, BENCH_REGISTRY_BIN,
 * BENCH_NGINX_BIN, BENCH_NO_WRITE=1 (print only).
 */
import { existsSync } from 'node:fs';
import { link, mkdir, readFile, writeFile } from 'node:fs/promises';
import { cpus, totalmem, release } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { clusterHerd, renderCluster, type ClusterSample } from './lib/cluster.js';
import { abHead, coldBlob, coldPull, curlFanOut, RssSampler, settledRss, wrkGet } from './lib/measure.js';
import { findBins, OPT_IN, PEERS, type PeerContext, type PeerDef, type PeerInstance } from './lib/peers.js';
import { emptyResult, renderMarkdown, type PeerResult, type RunInfo } from './lib/report.js';
import { startTokenServer, type TokenServer } from './lib/token-auth.js';
import { blobDownloads, MANIFEST_ACCEPT, seedBigImage, seedSmallImage, startUpstream, type Image, type Upstream } from './lib/upstream.js';
import {
  cpuOfTree,
  waitIdle,
  defaultTmpParent,
  GiB,
  initClockTicks,
  killAllSpawned,
  log,
  MiB,
  removeDir,
  run,
  sleep,
  tempDir,
  which,
} from './lib/util.js';

const HERE = dirname(fileURLToPath(import.meta.url));
/** bench/.build/run.js or bench/run.ts: the repository is the first parent holding package.json with our name. */
async function findRepoRoot(): Promise<string> {
  let dir = HERE;
  for (let i = 0; i < 5; i++) {
    try {
      const pkg = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8')) as { name?: string };
      if (pkg.name === 'oci-registry') return dir;
    } catch {
      // keep going up
    }
    dir = dirname(dir);
  }
  return resolve(HERE, '..', '..');
}

interface Options {
  quick: boolean;
  s3: boolean;
  peers: Set<string> | undefined;
  /** Only these measurements (cold, warm, manifest, herd, resources, cluster); all by default. */
  tests: Set<string> | undefined;
  reps: number;
}

function parseArgs(argv: string[]): Options {
  const quick = process.env['BENCH_QUICK'] === '1' || argv.includes('--quick');
  let reps = quick ? 1 : 3;
  let peers: Set<string> | undefined;
  let tests: Set<string> | undefined;
  let s3 = process.env['BENCH_S3'] === '1';
  for (const a of argv) {
    if (a === '--s3') s3 = true;
    else if (a === '--quick') continue;
    else if (a.startsWith('--reps=')) reps = Math.max(1, Number(a.slice(7)) || reps);
    else if (a.startsWith('--peers=')) peers = new Set(a.slice(8).split(',').filter(Boolean));
    else if (a.startsWith('--tests=')) tests = new Set(a.slice(8).split(',').filter(Boolean));
    else if (a === '--help' || a === '-h') {
      process.stdout.write(
        'usage: npm run bench -- [--quick] [--s3] [--reps=N] [--tests=cold,warm,manifest,herd,resources,cluster] [--peers=' +
          PEERS.map((p) => p.id).join(',') +
          ']\n  default: every peer except ' +
          [...OPT_IN].join(' and ') +
          ' (--s3 adds mirror-s3; name distribution-auth in --peers to run it)\n',
      );
      process.exit(0);
    } else {
      process.stderr.write(`unknown argument ${a} (try --help)\n`);
      process.exit(2);
    }
  }
  return { quick, s3, peers, tests, reps };
}

interface Sizes {
  smallLayers: number;
  smallLayerBytes: number;
  bigBytes: number;
  warmFetchesPerClient1: number;
  herdClients: number;
  rateSeconds: number;
}

interface Images {
  seq: Image;
  par: Image;
  big: Image;
  herd: Image;
}

async function machineInfo(repoRoot: string, bins: ReturnType<typeof findBins>): Promise<Record<string, string>> {
  const info: Record<string, string> = {};
  info['nproc'] = String((await run('nproc', []).catch(() => ({ stdout: String(cpus().length) }))).stdout.trim());
  try {
    const cpuinfo = await readFile('/proc/cpuinfo', 'utf8');
    info['CPU'] = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1]?.trim() ?? 'unknown';
  } catch {
    info['CPU'] = cpus()[0]?.model ?? 'unknown';
  }
  info['memory'] = `${Math.round(totalmem() / GiB)} GiB`;
  info['kernel'] = release();
  info['node'] = process.version;
  const ver = async (cmd: string | undefined, args: string[], re: RegExp) => {
    if (!cmd) return 'missing';
    try {
      const r = await run(cmd, args, { timeoutMs: 10_000 });
      return re.exec(r.stdout + r.stderr)?.[1] ?? 'unknown';
    } catch {
      return 'missing';
    }
  };
  info['tools'] = [
    `distribution ${await ver(bins.registry, ['--version'], /distribution\S*\s+v?(\S+)/)}`,
    `nginx ${await ver(bins.nginx, ['-v'], /nginx\/(\S+)/)}`,
    `curl ${await ver(which('curl'), ['--version'], /curl (\S+)/)}`,
    `wrk ${await ver(which('wrk'), ['-v'], /wrk (\S+)/)}`,
    `ab ${await ver(which('ab'), ['-V'], /Version (\S+)/)}`,
  ].join(', ');
  try {
    const head = (await run('git', ['rev-parse', '--short', 'HEAD'], { cwd: repoRoot, timeoutMs: 10_000 })).stdout.trim();
    const dirty = (await run('git', ['status', '--porcelain', '--', 'src'], { cwd: repoRoot, timeoutMs: 10_000 })).stdout.trim();
    info['mirror'] =
      `${relative(repoRoot, bins.mirrorMain)} at commit ${head || 'unknown'}${dirty ? ' + uncommitted changes in src/' : ''}`;
  } catch {
    info['mirror'] = relative(repoRoot, bins.mirrorMain);
  }
  return info;
}

/** Warn/error JSON log lines (pino level >= 40) and non-JSON stderr lines of the peer's processes. */
function problemLines(inst: PeerInstance): string[] {
  const out: string[] = [];
  for (const p of inst.procs) {
    for (const line of p.lines) {
      if (line.startsWith('{')) {
        try {
          const doc = JSON.parse(line) as { level?: number };
          if ((doc.level ?? 0) >= 40) out.push(`${p.name}: ${line}`);
        } catch {
          out.push(`${p.name}: ${line}`);
        }
      } else if (line.trim() !== '' && !/node --trace-warnings/.test(line)) {
        out.push(`${p.name}: ${line}`);
      }
    }
  }
  return out;
}

async function ensureOk(url: string, accept?: string): Promise<void> {
  const res = await request(url, { method: 'GET', headers: accept ? { accept } : {} });
  await res.body.dump();
  if (res.statusCode !== 200) throw new Error(`warm-up GET ${url}: HTTP ${res.statusCode}`);
}

async function runRep(
  peer: PeerDef,
  ctx: PeerContext,
  images: Images,
  sizes: Sizes,
  result: PeerResult,
  rep: number,
  only: Set<string> | undefined,
): Promise<void> {
  const up = peer.upstreamOf?.(ctx) ?? ctx.upstream;
  const inst = await peer.start(ctx);
  const t = new Set([...peer.tests].filter((kind) => !only || only.has(kind)));
  const measured = t.has('resources') && inst.pid !== undefined;
  const sampler = measured ? new RssSampler(inst.pid!).start() : undefined;
  const auxPid = inst.procs[1]?.pid; // s3rver for mirror-s3
  const crashed = () => inst.procs.filter((p) => !p.alive());
  try {
    if (sampler) {
      await sleep(1000);
      result.rss.idle.push(sampler.current());
    }
    const bigBlob = images.big.layers[0]!;
    const bigUrl = `${inst.url}/v2/${images.big.name}/blobs/${bigBlob.digest}`;

    if (t.has('cold')) {
      await up.quiesce(300, 10_000);
      if (inst.pid !== undefined) await waitIdle(inst.pid, { timeoutMs: 10_000 });
      const seq = await coldPull(inst.url, images.seq, 1);
      result.cold.seq.push(seq);
      const par = await coldPull(inst.url, images.par, 4);
      result.cold.par.push(par);
      const mark = up.mark();
      const bigCpu0 = inst.pid !== undefined ? cpuOfTree(inst.pid) : NaN;
      const big = await coldBlob(inst.url, images.big.name, bigBlob);
      result.cold.big.push(big);
      // distribution keeps downloading in the background (storeLocal) after answering.
      await up.quiesce(1000, 120_000);
      result.cold.bigUpstreamGets.push(blobDownloads(up.since(mark), bigBlob.digest).count);
      // The peer's CPU for that one cold pull, its background work (a store behind the answer) included.
      if (inst.pid !== undefined) result.cold.bigCpu.push(cpuOfTree(inst.pid) - bigCpu0);
      log(`  ${peer.id} #${rep} cold: seq ${seq.toFixed(3)} s, par ${par.toFixed(3)} s, big ${big.toFixed(2)} s`);
    }

    if (t.has('warm')) {
      // Make sure the blob is in the peer's cache (and the page cache) before measuring.
      const pre = await curlFanOut(bigUrl, 1, 1, bigBlob.size);
      if (pre.failures.length > 0) throw new Error(`warm-up GET of the big blob failed: ${pre.failures.join('; ')}`);
      if (peer.id !== 'direct' && peer.id !== 'nginx-static') await up.quiesce(1000, 120_000);
      if (inst.pid !== undefined) await waitIdle(inst.pid);
      const cpu0 = inst.pid !== undefined ? cpuOfTree(inst.pid) : NaN;
      const aux0 = auxPid !== undefined ? cpuOfTree(auxPid) : NaN;
      const c1 = await curlFanOut(bigUrl, 1, sizes.warmFetchesPerClient1, bigBlob.size);
      const cpuMid = inst.pid !== undefined ? cpuOfTree(inst.pid) : NaN;
      const c8 = await curlFanOut(bigUrl, 8, 1, bigBlob.size);
      const cpu1 = inst.pid !== undefined ? cpuOfTree(inst.pid) : NaN;
      const aux1 = auxPid !== undefined ? cpuOfTree(auxPid) : NaN;
      const served = (c1.goodBytes + c8.goodBytes) / GiB;
      const w = (r: typeof c1) => ({
        gibPerSecond: r.goodBytes / GiB / r.wallSeconds,
        clientCores: r.clientCpuSeconds / r.wallSeconds,
        failures: r.failures,
      });
      result.warm.c1.push(w(c1));
      result.warm.c8.push(w(c8));
      if (c1.goodBytes > 0) result.warm.cpuPerGiBC1.push((cpuMid - cpu0) / (c1.goodBytes / GiB));
      if (c8.goodBytes > 0) result.warm.cpuPerGiBC8.push((cpu1 - cpuMid) / (c8.goodBytes / GiB));
      if (served > 0) {
        result.warm.cpuPerGiB.push((cpu1 - cpu0) / served);
        if (auxPid !== undefined) result.warm.auxCpuPerGiB.push((aux1 - aux0) / served);
      }
      log(
        `  ${peer.id} #${rep} warm: 1 client ${w(c1).gibPerSecond.toFixed(2)} GiB/s (curl ${w(c1).clientCores.toFixed(2)} cores), ` +
          `8 clients ${w(c8).gibPerSecond.toFixed(2)} GiB/s (curl ${w(c8).clientCores.toFixed(2)} cores), ` +
          `${((cpu1 - cpu0) / served).toFixed(2)} CPU s/GiB (1 client ${((cpuMid - cpu0) / (c1.goodBytes / GiB)).toFixed(2)}, 8 clients ${((cpu1 - cpuMid) / (c8.goodBytes / GiB)).toFixed(2)})${c1.failures.length + c8.failures.length > 0 ? `, FAILURES ${[...c1.failures, ...c8.failures].join('; ')}` : ''}`,
      );
    }

    if (t.has('manifest')) {
      const base = `${inst.url}/v2/${images.seq.name}/manifests`;
      await ensureOk(`${base}/${images.seq.tag}`, MANIFEST_ACCEPT);
      await ensureOk(`${base}/${images.seq.manifestDigest}`, MANIFEST_ACCEPT);
      await up.quiesce(300, 10_000);
      if (inst.pid !== undefined) await waitIdle(inst.pid);
      const mark = up.mark();
      const tag = await wrkGet(`${base}/${images.seq.tag}`, sizes.rateSeconds, MANIFEST_ACCEPT);
      const digest = await wrkGet(`${base}/${images.seq.manifestDigest}`, sizes.rateSeconds, MANIFEST_ACCEPT);
      const head = await abHead(`${base}/${images.seq.tag}`, sizes.rateSeconds, MANIFEST_ACCEPT, ctx.tmp);
      await up.quiesce(500, 10_000);
      result.manifest.tag.push(tag);
      result.manifest.digest.push(digest);
      result.manifest.head.push(head);
      const seen = up.since(mark);
      result.manifest.upstreamManifestRequests.push(seen.filter((e) => e.path.includes('/manifests/')).length);
      result.manifest.upstreamPings.push(seen.filter((e) => e.path === '/v2/' || e.path === '/v2').length);
      log(
        `  ${peer.id} #${rep} manifests: tag ${tag.rps.toFixed(0)} rps p99 ${tag.p99ms.toFixed(2)} ms, digest ${digest.rps.toFixed(0)} rps p99 ${digest.p99ms.toFixed(2)} ms, ` +
          `HEAD ${head.rps.toFixed(0)} rps p99 ${head.p99ms.toFixed(2)} ms${tag.errors + digest.errors + head.errors > 0 ? ` (ERRORS ${tag.errors}/${digest.errors}/${head.errors})` : ''}`,
      );
    }

    if (t.has('herd')) {
      const blob = images.herd.layers[0]!;
      await up.quiesce(300, 10_000);
      if (inst.pid !== undefined) await waitIdle(inst.pid);
      const mark = up.mark();
      const herdCpu0 = inst.pid !== undefined ? cpuOfTree(inst.pid) : NaN;
      const r = await curlFanOut(`${inst.url}/v2/${images.herd.name}/blobs/${blob.digest}`, sizes.herdClients, 1, blob.size);
      await up.quiesce(1500, 180_000);
      if (inst.pid !== undefined && r.goodBytes > 0) result.herd.cpuPerGiB.push((cpuOfTree(inst.pid) - herdCpu0) / (r.goodBytes / GiB));
      const dl = blobDownloads(up.since(mark), blob.digest);
      result.herd.downloads.push(dl.count);
      result.herd.upstreamMiB.push(dl.bytes / MiB);
      result.herd.wallSeconds.push(r.wallSeconds);
      result.herd.failures.push(...r.failures);
      log(
        `  ${peer.id} #${rep} herd: ${dl.count} upstream downloads (${(dl.bytes / MiB).toFixed(0)} MiB), ${r.wallSeconds.toFixed(2)} s${r.failures.length ? `, ${r.failures.length} FAILED` : ''}`,
      );
    }

    if (sampler) {
      result.rss.after.push(await settledRss(sampler));
      result.rss.peak.push(sampler.stop());
    }
    const dead = crashed();
    if (dead.length > 0) throw new Error(`${dead.map((p) => p.name).join(', ')} exited during the run`);
  } catch (e) {
    const dead = crashed();
    const tail =
      dead.length > 0 ? `\n${dead.map((p) => `${p.name} exited; last output:\n${p.lines.slice(-20).join('\n')}`).join('\n')}` : '';
    throw new Error(`${(e as Error).message}${tail}`, { cause: e });
  } finally {
    sampler?.stop();
    for (const line of problemLines(inst)) if (result.logs.length < 50) result.logs.push(line);
    await inst.stop();
  }
}

/** How this run was started, for the report: `BENCH_QUICK=1 npm run bench -- --s3` or `node bench/.build/run.js --s3`. */
function commandLine(repoRoot: string, opts: Options): string {
  const args = process.argv.slice(2);
  const env = [
    ...(opts.quick && process.env['BENCH_QUICK'] === '1' ? ['BENCH_QUICK=1'] : []),
    ...(process.env['BENCH_MIRROR_MAIN'] ? [`BENCH_MIRROR_MAIN=${process.env['BENCH_MIRROR_MAIN']}`] : []),
  ];
  const cmd =
    process.env['npm_lifecycle_event'] === 'bench'
      ? `npm run bench${args.length > 0 ? ` -- ${args.join(' ')}` : ''}`
      : `node ${relative(repoRoot, process.argv[1] ?? 'bench/.build/run.js')}${args.length > 0 ? ` ${args.join(' ')}` : ''}`;
  return [...env, cmd].join(' ');
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const repoRoot = await findRepoRoot();
  const mirrorMain = resolve(repoRoot, process.env['BENCH_MIRROR_MAIN'] ?? join('dist', 'cli', 'main.js'));
  const bins = findBins(repoRoot, mirrorMain);
  await initClockTicks();
  const sizes: Sizes = opts.quick
    ? { smallLayers: 20, smallLayerBytes: 256 * 1024, bigBytes: 32 * MiB, warmFetchesPerClient1: 4, herdClients: 32, rateSeconds: 2 }
    : { smallLayers: 20, smallLayerBytes: 1 * MiB, bigBytes: 256 * MiB, warmFetchesPerClient1: 4, herdClients: 32, rateSeconds: 10 };
  const notes: string[] = [];
  const loads: string[] = [];
  for (const tool of ['curl', 'wrk', 'ab', 'bash']) {
    if (!which(tool)) throw new Error(`${tool} is required on PATH`);
  }
  if (!bins.registry) throw new Error('docker-registry (CNCF distribution) is required for the upstream: apt-get install docker-registry');

  const tmp = await tempDir(defaultTmpParent(), 'oci-bench-');
  const cleanup = () => killAllSpawned();
  process.once('exit', cleanup);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      log(`${sig}: stopping`);
      killAllSpawned();
      process.exit(130);
    });
  }

  let upstream: Upstream | undefined;
  let authUpstream: Upstream | undefined;
  let tokenServer: TokenServer | undefined;
  const results: PeerResult[] = [];
  const cluster: ClusterSample[] = [];
  let herdBlob: Image['layers'][number] | undefined;
  try {
    log(`temp dir ${tmp}; ${opts.quick ? 'QUICK' : 'full'} mode, ${opts.reps} repetition(s)`);
    upstream = await startUpstream(await tempDir(tmp, 'upstream-'), bins.registry);
    log(`upstream docker-registry at ${upstream.url}; seeding`);
    const gen = join(tmp, 'generated');
    await mkdir(gen);
    const images: Images = {
      seq: await seedSmallImage(upstream.url, 'bench/small-seq', sizes.smallLayers, sizes.smallLayerBytes),
      par: await seedSmallImage(upstream.url, 'bench/small-par', sizes.smallLayers, sizes.smallLayerBytes),
      big: await seedBigImage(upstream.url, 'bench/big-cold', sizes.bigBytes, join(gen, 'big-cold.bin')),
      herd: await seedBigImage(upstream.url, 'bench/big-herd', sizes.bigBytes, join(gen, 'big-herd.bin')),
    };
    await removeDir(join(gen, 'big-herd.bin'));
    // nginx-static serves the big blob file under the same URL path as a registry.
    const staticRoot = join(tmp, 'www');
    const staticDir = join(staticRoot, 'v2', images.big.name, 'blobs');
    await mkdir(staticDir, { recursive: true });
    await link(join(gen, 'big-cold.bin'), join(staticDir, images.big.layers[0]!.digest));
    // The same storage behind token auth, for the distribution-auth peer (see peers.ts).
    if (opts.peers?.has('distribution-auth') && which('openssl')) {
      tokenServer = await startTokenServer(await tempDir(tmp, 'token-'));
      authUpstream = await startUpstream(await tempDir(tmp, 'upstream-auth-'), bins.registry, {
        storage: upstream.storage,
        tokenAuth: tokenServer,
      });
    }
    const ctx: PeerContext = { tmp, upstream, authUpstream, bins, staticRoot };

    const selected: Array<{ peer: PeerDef; result: PeerResult }> = [];
    for (const peer of PEERS) {
      if (
        opts.peers
          ? !opts.peers.has(peer.id) && !(peer.id === 'mirror-s3' && opts.s3)
          : OPT_IN.has(peer.id) && !(peer.id === 'mirror-s3' && opts.s3)
      )
        continue;
      const result = emptyResult(peer.id, peer.label);
      results.push(result);
      const missing = peer.missing(ctx);
      if (missing) {
        result.skipped = missing;
        log(`${peer.id}: SKIPPED (${missing})`);
        continue;
      }
      selected.push({ peer, result });
    }
    // Round-robin: repetition 1 of every peer, then repetition 2, ... so that load from outside the
    // bench (the machine is shared) spreads over all peers rather than hitting one.
    for (let rep = 1; rep <= opts.reps; rep++) {
      loads.push(`round ${rep}: load average ${(await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ')}`);
      log(`round ${rep}/${opts.reps} (${loads[loads.length - 1]})`);
      for (const { peer, result } of selected) {
        const t0 = Date.now();
        try {
          await runRep(peer, ctx, images, sizes, result, rep, opts.tests);
        } catch (e) {
          const msg = (e as Error).message;
          result.errors.push(`repetition ${rep}: ${msg}`);
          log(`  ${peer.id} #${rep} ERROR: ${msg}`);
        }
        result.seconds += (Date.now() - t0) / 1000;
        if (!upstream.proc.alive()) throw new Error('the upstream docker-registry exited');
      }
    }
    // The cluster scenario: three replicas alone, then three that cooperate, with the herd spread over them.
    herdBlob = images.herd.layers[0];
    const runCluster = opts.peers ? opts.peers.has('mirror-fs') : true;
    if (runCluster && (!opts.tests || opts.tests.has('cluster')) && herdBlob && existsSync(bins.mirrorMain)) {
      for (let rep = 1; rep <= opts.reps; rep++) {
        for (const variant of ['independent', 'cooperating'] as const) {
          try {
            const sample = await clusterHerd(ctx, images.herd.name, herdBlob, sizes.herdClients, variant);
            cluster.push(sample);
            log(
              `  cluster ${variant} #${rep}: ${sample.downloads} upstream downloads (${sample.upstreamMiB.toFixed(0)} MiB), ${sample.wallSeconds.toFixed(2)} s${sample.failures.length ? `, ${sample.failures.length} FAILED` : ''}`,
            );
          } catch (e) {
            notes.push(`cluster ${variant} repetition ${rep}: ${(e as Error).message}`);
            log(`  cluster ${variant} #${rep} ERROR: ${(e as Error).message}`);
          }
        }
      }
    }
    loads.push(`end: load average ${(await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ')}`);
    if (!bins.nginx) notes.push('nginx is not installed: nginx-static and nginx-cache were skipped');
  } finally {
    await authUpstream?.stop();
    await tokenServer?.close();
    await upstream?.stop();
    await removeDir(tmp);
  }

  const date = new Date(started);
  const stamp = date.toISOString().slice(0, 16).replace(':', '-');
  const info: RunInfo = {
    date: date.toISOString().replace(/\.\d+Z$/, 'Z'),
    command: commandLine(repoRoot, opts),
    mode: opts.quick ? 'quick' : 'full',
    reps: opts.reps,
    machine: await machineInfo(repoRoot, bins),
    sizes,
    totalSeconds: (Date.now() - started) / 1000,
    notes: [`machine load (other work shares these cores): ${loads.join('; ')}`, ...notes],
  };
  const md = renderMarkdown(info, results) + (herdBlob ? `\n${renderCluster(cluster, sizes.herdClients, herdBlob)}` : '');
  process.stdout.write(`\n${md}\n`);
  if (process.env['BENCH_NO_WRITE'] !== '1') {
    const dir = join(repoRoot, 'bench', 'results');
    await mkdir(dir, { recursive: true });
    const base = `${stamp}${opts.quick ? '-quick' : ''}${opts.peers || opts.tests ? '-partial' : ''}`;
    await writeFile(join(dir, `${base}.md`), md);
    await writeFile(join(dir, `${base}.json`), `${JSON.stringify({ info, results, cluster }, null, 2)}\n`);
    // latest.md is the last full run over the default peer set (not a quick or a --peers run).
    const latest = !opts.quick && !opts.peers && !opts.tests;
    if (latest) await writeFile(join(dir, 'latest.md'), md);
    log(`wrote bench/results/${base}.md and .json${latest ? ' and latest.md' : ''}`);
  }
}

main().catch((e: unknown) => {
  log(`FAILED: ${(e as Error).stack ?? String(e)}`);
  killAllSpawned();
  process.exit(1);
});
