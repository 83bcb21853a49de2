/**
 * A private Docker Engine (Debian `docker.io`, dockerd 20.10) for e2e tests, and the docker CLI against it.
 *
 * One temp dir holds --data-root, --exec-root, --pidfile, the API socket, the daemon.json given as
 * --config-file (so /etc/docker/daemon.json never applies) and the log. No networking: --bridge=none,
 * --iptables=false, --ip6tables=false, --userland-proxy=false. dockerd starts and supervises its own
 * containerd (under exec-root) unless a system containerd is running; its namespaces are private either way.
 * The storage driver is overlay2, or vfs when overlay2 does not start here.
 *
 * stop() sends SIGTERM to this dockerd's PID only (its managed containerd is stopped by dockerd; if it
 * outlives dockerd it is killed by the PID in exec-root/containerd/containerd.pid after checking that its
 * command line names our temp dir), unmounts whatever is left under the temp dir, path by path, and
 * removes it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { findBinary } from './binaries.js';
import { run, unmountUnder } from './seed.js';
import { makeTempDir, sleep, stopChild, tail, trackChild } from './util.js';

export interface Dockerd {
  dir: string;
  /** `unix:///.../docker.sock` */
  host: string;
  storageDriver: string;
  /** Why an earlier storage driver was not used. */
  notes: string[];
  pid: number;
  logPath: string;
  /** `docker -H HOST ARGS` with a private DOCKER_CONFIG. */
  docker(args: readonly string[], timeoutMs?: number): Promise<{ stdout: string; stderr: string }>;
  logTail(n?: number): string;
  stop(): Promise<void>;
}

export interface DockerdOptions {
  /** The daemon.json content (e.g. the output of `client-config docker`). */
  daemonJson: string;
  /** Storage drivers to try in order; default OCI_E2E_DOCKER_STORAGE_DRIVER, else overlay2 then vfs. */
  storageDrivers?: string[];
  keep?: boolean;
}

/** An error whose message is the reason dockerd cannot run here (its log included). */
export class DockerdStartError extends Error {
  override name = 'DockerdStartError';
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Kills containerd started by our dockerd if it outlived it: its PID file, its command line naming our dir. */
async function reapManagedContainerd(execRoot: string): Promise<void> {
  let pid: number;
  try {
    pid = Number(readFileSync(join(execRoot, 'containerd', 'containerd.pid'), 'utf8').trim());
  } catch {
    return;
  }
  if (!Number.isInteger(pid) || pid <= 1 || !pidAlive(pid)) return;
  let cmdline: string;
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    return;
  }
  if (!cmdline.includes(execRoot)) return;
  process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 100 && pidAlive(pid); i++) await sleep(100);
  if (pidAlive(pid)) process.kill(pid, 'SIGKILL');
}

async function startOnce(
  dir: string,
  driver: string,
  daemonJson: string,
  dockerBin: string,
  dockerdBin: string,
): Promise<{ child: ChildProcess; forget: () => void; host: string; logPath: string; execRoot: string; docker: Dockerd['docker'] }> {
  const sub = join(dir, driver);
  const dataRoot = join(sub, 'data');
  const execRoot = join(sub, 'exec');
  const sock = join(sub, 'docker.sock');
  const configFile = join(sub, 'daemon.json');
  const logPath = join(sub, 'dockerd.log');
  const cliConfig = join(dir, 'cli');
  await mkdir(dataRoot, { recursive: true });
  await mkdir(cliConfig, { recursive: true });
  await writeFile(configFile, daemonJson);
  await writeFile(join(cliConfig, 'config.json'), '{}\n');
  const host = `unix://${sock}`;
  // Private containerd namespaces in case dockerd finds a system containerd at /run/containerd.
  const ns = `oci-e2e-${process.pid}`;
  const args = [
    '--config-file',
    configFile,
    '--data-root',
    dataRoot,
    '--exec-root',
    execRoot,
    '--pidfile',
    join(sub, 'docker.pid'),
    '-H',
    host,
    '--storage-driver',
    driver,
    '--bridge=none',
    '--iptables=false',
    '--ip6tables=false',
    '--ip-masq=false',
    '--ip-forward=false',
    '--userland-proxy=false',
    '--containerd-namespace',
    ns,
    '--containerd-plugins-namespace',
    `${ns}-plugins`,
    '--log-level',
    'info',
  ];
  const fd = openSync(logPath, 'a');
  const env: NodeJS.ProcessEnv = { ...process.env, NO_PROXY: '127.0.0.1,localhost', no_proxy: '127.0.0.1,localhost' };
  delete env['DOCKER_HOST'];
  const child = spawn(dockerdBin, args, { stdio: ['ignore', fd, fd], env });
  closeSync(fd);
  const forget = trackChild(child);
  const cliEnv: NodeJS.ProcessEnv = { ...env, DOCKER_CONFIG: cliConfig };
  delete cliEnv['DOCKER_CONTEXT'];
  delete cliEnv['DOCKER_TLS_VERIFY'];
  const docker: Dockerd['docker'] = (a, timeoutMs = 300_000) => run(dockerBin, ['-H', host, ...a], { env: cliEnv, timeoutMs });
  return { child, forget, host, logPath, execRoot, docker };
}

export async function startDockerd(options: DockerdOptions): Promise<Dockerd> {
  const dockerdBin = findBinary('dockerd');
  const dockerBin = findBinary('docker');
  if (!dockerdBin || !dockerBin) throw new Error('MISSING BINARY dockerd/docker: install it with apt-get install docker.io');
  const envDriver = process.env['OCI_E2E_DOCKER_STORAGE_DRIVER'];
  const drivers = options.storageDrivers ?? (envDriver ? [envDriver] : ['overlay2', 'vfs']);
  const dir = await makeTempDir('dockerd');
  const keep = options.keep === true || Boolean(process.env.OCI_E2E_KEEP);
  const notes: string[] = [];
  const readTail = (path: string, n = 40): string => {
    try {
      return tail(readFileSync(path, 'utf8'), n);
    } catch {
      return '';
    }
  };

  for (const driver of drivers) {
    const s = await startOnce(dir, driver, options.daemonJson, dockerBin, dockerdBin);
    const stopThis = async (): Promise<void> => {
      await stopChild(s.child, 'SIGTERM', 30_000);
      s.forget();
      await reapManagedContainerd(s.execRoot);
    };
    const deadline = Date.now() + 60_000;
    let failure: string | undefined;
    for (;;) {
      if (s.child.exitCode !== null || s.child.signalCode !== null) {
        failure = `dockerd --storage-driver ${driver} exited (${s.child.exitCode ?? s.child.signalCode}):\n${readTail(s.logPath)}`;
        break;
      }
      try {
        const { stdout } = await s.docker(['info', '--format', '{{.Driver}}'], 10_000);
        if (stdout.trim() !== driver) failure = `dockerd runs storage driver ${JSON.stringify(stdout.trim())}, not ${driver}`;
        break;
      } catch (e) {
        if (Date.now() > deadline) {
          failure = `dockerd --storage-driver ${driver} did not answer on ${s.host} within 60 s: ${(e as Error).message}\n${readTail(s.logPath)}`;
          break;
        }
        await sleep(200);
      }
    }
    if (failure) {
      notes.push(failure);
      await stopThis();
      await unmountUnder(join(dir, driver));
      continue;
    }
    let stopped = false;
    return {
      dir,
      host: s.host,
      storageDriver: driver,
      notes,
      pid: s.child.pid ?? -1,
      logPath: s.logPath,
      docker: s.docker,
      logTail: (n) => readTail(s.logPath, n),
      async stop(): Promise<void> {
        if (stopped) return;
        stopped = true;
        await stopThis();
        await unmountUnder(dir);
        if (!keep) await rm(dir, { recursive: true, force: true });
      },
    };
  }
  await unmountUnder(dir);
  if (!keep) await rm(dir, { recursive: true, force: true });
  throw new DockerdStartError(`dockerd cannot run here with any of ${drivers.join(', ')}:\n${notes.join('\n----\n')}`);
}
