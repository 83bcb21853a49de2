/**
 * A private containerd daemon (Debian `containerd` 1.6) for e2e tests, and `ctr` against it.
 *
 * Everything lives in one temp dir: a generated `--config` (version 2, CRI plugin disabled), root,
 * state, the gRPC/ttrpc sockets, the opt dir, the log. The snapshotter is overlayfs when its plugin
 * loaded (containerd test-mounts an overlay at start), otherwise native. stop() sends SIGTERM to this
 * daemon's PID only, unmounts whatever is still mounted under the temp dir (path by path) and removes it.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { findBinary } from './binaries.js';
import { run, unmountUnder } from './seed.js';
import { makeTempDir, sleep, stopChild, tail, trackChild } from './util.js';

export interface Containerd {
  dir: string;
  /** The gRPC socket (ctr --address). */
  address: string;
  /** The containerd namespace ctr uses (`-n`). */
  namespace: string;
  /** overlayfs or native. */
  snapshotter: string;
  /** Why overlayfs was not used, when it was not. */
  snapshotterNote: string | undefined;
  pid: number;
  logPath: string;
  /** `ctr --address SOCK -n NS ARGS` (CONTAINERD_SNAPSHOTTER set). */
  ctr(args: readonly string[], timeoutMs?: number): Promise<{ stdout: string; stderr: string }>;
  /** The daemon's log so far (last lines). */
  logTail(n?: number): string;
  stop(): Promise<void>;
}

export interface ContainerdOptions {
  /** `-n` for ctr; default `test`. */
  namespace?: string;
  /** Force a snapshotter (else OCI_E2E_CONTAINERD_SNAPSHOTTER, else overlayfs when available, else native). */
  snapshotter?: string;
  keep?: boolean;
}

function configToml(dir: string, address: string): string {
  const q = (s: string): string => JSON.stringify(s);
  return [
    'version = 2',
    `root = ${q(join(dir, 'root'))}`,
    `state = ${q(join(dir, 'state'))}`,
    // A pull needs no CRI (and the CRI plugin would want CNI, /etc/cni, ...).
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    '',
    '[grpc]',
    `  address = ${q(address)}`,
    '',
    '[ttrpc]',
    `  address = ${q(address + '.ttrpc')}`,
    '',
    '[debug]',
    '  address = ""',
    '  level = "info"',
    '',
    '[metrics]',
    '  address = ""',
    '',
    '[plugins]',
    '  [plugins."io.containerd.internal.v1.opt"]',
    `    path = ${q(join(dir, 'opt'))}`,
    '',
  ].join('\n');
}

/** The STATUS column of `ctr plugins ls` for one plugin, e.g. `ok`, `skip`, `error`. */
function pluginStatus(pluginsLs: string, type: string, id: string): string | undefined {
  for (const line of pluginsLs.split('\n')) {
    const cols = line.trim().split(/\s+/);
    if (cols[0] === type && cols[1] === id) return cols[cols.length - 1];
  }
  return undefined;
}

export async function startContainerd(options: ContainerdOptions = {}): Promise<Containerd> {
  const bin = findBinary('containerd');
  const ctrBin = findBinary('ctr');
  if (!bin || !ctrBin) throw new Error('MISSING BINARY containerd/ctr: install it with apt-get install containerd');
  const dir = await makeTempDir('containerd');
  const address = join(dir, 'containerd.sock');
  const configPath = join(dir, 'config.toml');
  const logPath = join(dir, 'containerd.log');
  await mkdir(join(dir, 'opt'), { recursive: true });
  await writeFile(configPath, configToml(dir, address));

  const fd = openSync(logPath, 'a');
  const child = spawn(bin, ['--config', configPath], { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const forget = trackChild(child);
  const logTail = (n = 40): string => {
    try {
      return tail(readFileSync(logPath, 'utf8'), n);
    } catch {
      return '';
    }
  };
  const keep = options.keep === true || Boolean(process.env.OCI_E2E_KEEP);
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await stopChild(child, 'SIGTERM', 15_000);
    forget();
    await unmountUnder(dir);
    if (!keep) await rm(dir, { recursive: true, force: true });
  };

  const namespace = options.namespace ?? 'test';
  let snapshotter = options.snapshotter ?? process.env['OCI_E2E_CONTAINERD_SNAPSHOTTER'] ?? '';
  const env: NodeJS.ProcessEnv = { ...process.env, NO_PROXY: '127.0.0.1,localhost', no_proxy: '127.0.0.1,localhost' };
  const ctrRaw = (args: readonly string[], timeoutMs = 180_000) =>
    run(ctrBin, ['--address', address, '--namespace', namespace, ...args], {
      env: { ...env, CONTAINERD_SNAPSHOTTER: snapshotter },
      timeoutMs,
    });

  try {
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`containerd exited (${child.exitCode ?? child.signalCode}) before serving:\n${logTail()}`);
      }
      try {
        await ctrRaw(['version'], 5_000);
        break;
      } catch (e) {
        if (Date.now() > deadline)
          throw new Error(`containerd did not answer on ${address} within 30 s: ${(e as Error).message}\n${logTail()}`, { cause: e });
        await sleep(100);
      }
    }
    let note: string | undefined;
    if (!snapshotter) {
      const { stdout } = await ctrRaw(['plugins', 'ls']);
      const overlay = pluginStatus(stdout, 'io.containerd.snapshotter.v1', 'overlayfs');
      if (overlay === 'ok') snapshotter = 'overlayfs';
      else {
        snapshotter = 'native';
        const why = logTail(400)
          .split('\n')
          .filter((l) => /overlay/i.test(l) && /level=(warning|error)/.test(l))
          .join('\n');
        note = `overlayfs snapshotter unavailable (status ${overlay ?? 'absent'}), using native${why ? `:\n${why}` : ''}`;
      }
    }
    return {
      dir,
      address,
      namespace,
      snapshotter,
      snapshotterNote: note,
      pid: child.pid ?? -1,
      logPath,
      ctr: ctrRaw,
      logTail,
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** One row of `ctr images ls`: ref, media type, digest. */
export interface CtrImage {
  ref: string;
  type: string;
  digest: string;
  platforms: string;
}

export function parseImagesLs(text: string): CtrImage[] {
  const rows: CtrImage[] = [];
  for (const line of text.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 5 || !cols[2]?.startsWith('sha256:')) continue;
    // REF TYPE DIGEST SIZE(2 cols: "1.2 MiB") PLATFORMS LABELS
    rows.push({ ref: cols[0]!, type: cols[1]!, digest: cols[2]!, platforms: cols[5] ?? '' });
  }
  return rows;
}

/** One row of `ctr images check`: ref, digest, status (`complete (3/3)`), unpacked. */
export interface CtrCheck {
  ref: string;
  digest: string;
  status: string;
  unpacked: string;
}

export function parseImagesCheck(text: string): CtrCheck[] {
  const rows: CtrCheck[] = [];
  for (const line of text.split('\n').slice(1)) {
    // REF TYPE DIGEST STATUS SIZE UNPACKED, e.g.
    // docker.io/library/alpine:3.19 application/vnd.docker...+json sha256:... complete (3/3) 512.3 KiB/512.3 KiB true
    const m = /^(\S+)\s+(\S+)\s+(sha256:[0-9a-f]{64})\s+(\S+(?: \(\d+\/\d+\))?)\s+.*\s(true|false)\s*$/.exec(line.trim());
    if (m) rows.push({ ref: m[1]!, digest: m[3]!, status: m[4]!, unpacked: m[5]! });
  }
  return rows;
}
