/**
 * Three (or more) real mirror processes that cooperate (`--peers`), for the cluster e2e tests and the
 * bench: replica i listens on 127.0.0.<i+1>, all on one port (Linux routes all of 127/8 to loopback), so
 * the member list is known before any starts and `dns+http://NAME:PORT` can name them all. Each has its
 * own filesystem root, or they share an S3 bucket (s3rver). Membership is the static list, or a DNS name
 * served by the in-test DNS server (test-dns.ts), so replicas can be added and removed while serving.
 * Replicas are stopped (SIGTERM), killed (SIGKILL) and started again on the same address and root.
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { s3CommandArgs, type S3TestServer } from '../../helpers/s3-server.js';
import { startMirrorProcess, type MirrorProcess } from '../../helpers/mirror-process.js';
import { portFreeOn } from '../../helpers/ports.js';
import { dnsPreloadEnv, startTestDns, type TestDns } from './test-dns.js';
import { makeTempDir } from './util.js';

export const CLUSTER_DNS_NAME = 'mirror-peers.e2e.test';

export interface MirrorClusterOptions {
  /** Replicas started at once. Default 3. */
  replicas?: number;
  /** Room for replicas added later with add() (their addresses are reserved up front). Default 1 with DNS membership, else 0. */
  spare?: number;
  /** Upstream config YAML (every replica gets the same). */
  configYaml?: string;
  /** Default: one filesystem root per replica. With `s3`: all share its bucket (each its own spool dir). */
  s3?: S3TestServer;
  /** `static` (default): `--peers` lists every address; `dns`: `--peers dns+http://NAME:PORT` via the test DNS server. */
  membership?: 'static' | 'dns';
  /** More global flags for every replica (e.g. `--peer-cache-copies`, `--max-spool-size`). */
  args?: string[];
  env?: Record<string, string>;
  logLevel?: string;
}

export interface ClusterReplica {
  index: number;
  /** `127.0.0.<index+1>` */
  address: string;
  /** `http://127.0.0.<index+1>:PORT`: the replica's base URL, as its peers know it. */
  url: string;
  /** Its filesystem root (unused with S3). */
  root: string;
  /** The running process; undefined while stopped. */
  process: MirrorProcess | undefined;
}

export interface MirrorCluster {
  port: number;
  replicas: ClusterReplica[];
  /** The `--peers` value every replica got. */
  peers: string;
  /** The test DNS server (membership `dns`). */
  dns: TestDns | undefined;
  /** The replicas running now. */
  running(): ClusterReplica[];
  /** Starts replica i (again): same address, port and root. With DNS membership it is published once it listens. */
  start(i: number): Promise<ClusterReplica>;
  /** SIGTERM (graceful) or SIGKILL; with DNS membership the replica is unpublished first. */
  stop(i: number, signal?: NodeJS.Signals): Promise<void>;
  kill(i: number): Promise<void>;
  /** Starts the next spare replica (DNS membership only: a static list cannot grow). */
  add(): Promise<ClusterReplica>;
  /** Stops everything and removes the temp dirs. */
  close(): Promise<void>;
}

export async function startMirrorCluster(options: MirrorClusterOptions = {}): Promise<MirrorCluster> {
  const count = options.replicas ?? 3;
  const membership = options.membership ?? 'static';
  const spare = options.spare ?? (membership === 'dns' ? 1 : 0);
  if (membership === 'static' && spare > 0) throw new Error('spare replicas need DNS membership: a static --peers list cannot grow');
  const total = count + spare;
  const work = await makeTempDir('cluster');
  const addresses = Array.from({ length: total }, (_, i) => `127.0.0.${i + 1}`);
  const port = await portFreeOn(addresses);
  const replicas: ClusterReplica[] = addresses.map((address, index) => ({
    index,
    address,
    url: `http://${address}:${port}`,
    root: join(work, `replica-${index}`),
    process: undefined,
  }));
  const dns = membership === 'dns' ? await startTestDns() : undefined;
  const peers = dns
    ? `dns+http://${CLUSTER_DNS_NAME}:${port}`
    : replicas
        .slice(0, count)
        .map((r) => r.url)
        .join(',');
  const dnsEnv = dns ? await dnsPreloadEnv(dns, work) : {};
  const published = new Set<number>();
  const publish = (): void =>
    dns?.set(
      CLUSTER_DNS_NAME,
      [...published].sort().map((i) => addresses[i] as string),
    );

  const start = async (i: number): Promise<ClusterReplica> => {
    const r = replicas[i];
    if (!r) throw new Error(`no replica ${i}`);
    if (r.process) throw new Error(`replica ${i} is running`);
    await mkdir(r.root, { recursive: true });
    const storageArgs = options.s3 ? ['--spool-dir', r.root, ...s3CommandArgs(options.s3)] : ['filesystem', '--root', r.root];
    r.process = await startMirrorProcess({
      root: r.root,
      ...(options.configYaml !== undefined ? { configYaml: options.configYaml } : {}),
      // The later --listen wins over the helper's 127.0.0.1:0; the advertise URL follows from it.
      args: ['--listen', `${r.address}:${port}`, '--peers', peers, ...(options.args ?? []), ...storageArgs],
      // POD_IP from the test's own environment must not override the listen address.
      env: { POD_IP: '', ...dnsEnv, ...options.env },
      ...(options.logLevel ? { logLevel: options.logLevel } : {}),
    });
    void r.process.exited.then(() => {
      r.process = undefined;
    });
    published.add(i);
    publish();
    return r;
  };

  const stop = async (i: number, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    const r = replicas[i];
    if (!r?.process) return;
    published.delete(i);
    publish();
    await r.process.stop(signal);
    r.process = undefined;
  };

  const cluster: MirrorCluster = {
    port,
    replicas,
    peers,
    dns,
    running: () => replicas.filter((r) => r.process !== undefined),
    start,
    stop,
    kill: (i) => stop(i, 'SIGKILL'),
    add: async () => {
      if (!dns) throw new Error('add() needs DNS membership');
      const next = replicas.findIndex((r) => r.process === undefined && !published.has(r.index) && r.index >= count);
      if (next < 0) throw new Error('no spare replica left (raise `spare`)');
      return start(next);
    },
    close: async () => {
      await Promise.all(replicas.map((r) => stop(r.index)));
      await dns?.close();
      if (!process.env['OCI_E2E_KEEP']) await rm(work, { recursive: true, force: true });
    },
  };
  try {
    await Promise.all(replicas.slice(0, count).map((r) => start(r.index)));
  } catch (e) {
    await cluster.close();
    throw e;
  }
  return cluster;
}
