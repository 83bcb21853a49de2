/**
 * The cluster scenario (issue #15): three mirror processes (filesystem, one cache root each) on
 * 127.0.0.1-3, a herd of clients pulling one cold blob spread evenly over them. Measured twice: three
 * independent replicas (no --peers: every replica downloads the blob itself) and three that cooperate
 * (--peers: the owner downloads it once, the others stream it from the owner). Reported: upstream
 * downloads and bytes for the blob, and the herd's wall time.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { curlFanOut } from './measure.js';
import type { PeerContext } from './peers.js';
import { blobDownloads, type Blob } from './upstream.js';
import { freePort, removeDir, startProcess, tempDir, waitHttp, type ManagedProcess } from './util.js';

export type ClusterVariant = 'independent' | 'cooperating';

export interface ClusterSample {
  variant: ClusterVariant;
  downloads: number;
  upstreamMiB: number;
  wallSeconds: number;
  failures: string[];
}

const REPLICAS = 3;

async function startReplicas(ctx: PeerContext, variant: ClusterVariant): Promise<{ urls: string[]; procs: ManagedProcess[]; dir: string }> {
  const dir = await tempDir(ctx.tmp, `cluster-${variant}-`);
  const configFile = join(dir, 'upstreams.yaml');
  await writeFile(configFile, `- namespace: docker.io\n  host: ${ctx.upstream.host}\n  tls: false\n`);
  // One port on every address (Linux routes all of 127/8 to loopback): the member list is known up front.
  const port = await freePort();
  const urls = Array.from({ length: REPLICAS }, (_, i) => `http://127.0.0.${i + 1}:${port}`);
  const env: NodeJS.ProcessEnv = { ...process.env, POD_IP: '', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' };
  delete env['NODE_OPTIONS'];
  const procs: ManagedProcess[] = [];
  try {
    for (const [i, url] of urls.entries()) {
      const root = join(dir, `replica-${i}`);
      await mkdir(root);
      const peers = variant === 'cooperating' ? ['--peers', urls.join(',')] : [];
      const proc = startProcess(
        `mirror-${i}`,
        ctx.bins.node,
        [
          ctx.bins.mirrorMain,
          '--listen',
          `127.0.0.${i + 1}:${port}`,
          '--upstream-config-file',
          configFile,
          '--log-level',
          'warn',
          ...peers,
          'filesystem',
          '--root',
          root,
        ],
        { env },
      );
      procs.push(proc);
      await waitHttp(`${url}/v2/`, 30_000, proc, 200);
    }
  } catch (e) {
    for (const p of procs) await p.stop('SIGKILL');
    await removeDir(dir);
    throw e;
  }
  return { urls, procs, dir };
}

/** One herd of `clients` GETs of the cold `blob`, spread evenly over three fresh replicas. */
export async function clusterHerd(
  ctx: PeerContext,
  name: string,
  blob: Blob,
  clients: number,
  variant: ClusterVariant,
): Promise<ClusterSample> {
  const { urls, procs, dir } = await startReplicas(ctx, variant);
  try {
    await ctx.upstream.quiesce(300, 10_000);
    const mark = ctx.upstream.mark();
    const share = (i: number): number => Math.floor(clients / REPLICAS) + (i < clients % REPLICAS ? 1 : 0);
    const runs = await Promise.all(urls.map((url, i) => curlFanOut(`${url}/v2/${name}/blobs/${blob.digest}`, share(i), 1, blob.size)));
    await ctx.upstream.quiesce(1500, 180_000);
    const dl = blobDownloads(ctx.upstream.since(mark), blob.digest);
    return {
      variant,
      downloads: dl.count,
      upstreamMiB: dl.bytes / (1024 * 1024),
      wallSeconds: Math.max(...runs.map((r) => r.wallSeconds)),
      failures: runs.flatMap((r) => r.failures),
    };
  } finally {
    for (const p of procs) await p.stop('SIGTERM', 5000);
    await removeDir(dir);
  }
}

/** The markdown section for the report. */
export function renderCluster(samples: ClusterSample[], clients: number, blob: Blob): string {
  if (samples.length === 0) return '';
  const median = (xs: number[]): number => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.floor((s.length - 1) / 2)] ?? 0;
  };
  const lines = [
    `## Cluster: three replicas, ${clients} clients of one cold ${(blob.size / (1024 * 1024)).toFixed(0)} MiB blob spread over them`,
    '',
    'Filesystem mode, one cache root per replica, on 127.0.0.1-3. `independent`: no `--peers` (as before issue #15);',
    '`cooperating`: `--peers` lists the three, the owner downloads and the others stream from it. Medians over the repetitions.',
    '',
    '| replicas | upstream downloads | upstream MiB per blob | wall s | failed transfers |',
    '|---|---|---|---|---|',
  ];
  for (const variant of ['independent', 'cooperating'] as const) {
    const of = samples.filter((s) => s.variant === variant);
    if (of.length === 0) continue;
    lines.push(
      `| ${variant} | ${median(of.map((s) => s.downloads))} | ${(median(of.map((s) => s.upstreamMiB)) / (blob.size / (1024 * 1024))).toFixed(2)}x (${median(of.map((s) => s.upstreamMiB)).toFixed(0)}) | ${median(of.map((s) => s.wallSeconds)).toFixed(2)} | ${of.reduce((n, s) => n + s.failures.length, 0)} |`,
    );
  }
  return `${lines.join('\n')}\n`;
}
