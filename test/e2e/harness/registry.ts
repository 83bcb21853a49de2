/**
 * A real CNCF distribution registry (Debian `docker-registry`, 2.8) as an upstream for e2e tests:
 * filesystem storage in a temp dir, plain HTTP on 127.0.0.1, access log in a file, optional htpasswd.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { findBinary } from './binaries.js';
import { freePort, makeTempDir, sleep, stopChild, tail, trackChild } from './util.js';

const execFileP = promisify(execFile);

export const DOCKER_REGISTRY_BIN = '/usr/bin/docker-registry';

export interface DockerRegistryOptions {
  /** Require HTTP Basic auth with this account (bcrypt htpasswd made with `htpasswd -Bbn`). */
  htpasswd?: { username: string; password: string };
  /** Keep the temp dir (storage, config, log) after stop(); also when OCI_E2E_KEEP is set. */
  keep?: boolean;
}

/** One line of the registry's access log (combined log format). */
export interface AccessLogEntry {
  remote: string;
  method: string;
  /** Path and query as requested. */
  url: string;
  /** Path without the query. */
  path: string;
  status: number;
  userAgent: string;
  line: string;
}

export interface DockerRegistry {
  /** `http://127.0.0.1:PORT` */
  url: string;
  /** `127.0.0.1:PORT`, as used in image references and as a mirror namespace. */
  host: string;
  port: number;
  pid: number;
  /** The temp dir with config.yml, htpasswd, registry.log and data/. */
  dir: string;
  /** The registry's stdout+stderr: logrus lines and the access log. */
  logPath: string;
  /** Number of `GET /v2/<name>/blobs/<digest>` requests in the access log so far (any status). */
  blobGets(digest: string): number;
  /** Parsed access log entries so far. */
  accessLog(): AccessLogEntry[];
  /** SIGTERM to this registry's PID only, wait for it to exit, remove the temp dir (log included) unless kept. */
  stop(): Promise<void>;
}

const ACCESS_LINE = /^(\S+) \S+ \S+ \[[^\]]*\] "([A-Z]+) (\S+) HTTP\/[0-9.]+" (\d{3}) \S+ "[^"]*" "([^"]*)"/;

export function parseAccessLog(text: string): AccessLogEntry[] {
  const entries: AccessLogEntry[] = [];
  for (const line of text.split('\n')) {
    const m = ACCESS_LINE.exec(line);
    if (!m) continue;
    const url = m[3] ?? '';
    entries.push({
      remote: m[1] ?? '',
      method: m[2] ?? '',
      url,
      path: url.split('?')[0] ?? url,
      status: Number(m[4]),
      userAgent: m[5] ?? '',
      line,
    });
  }
  return entries;
}

async function makeHtpasswd(username: string, password: string): Promise<string> {
  const bin = findBinary('htpasswd');
  if (!bin) throw new Error('MISSING BINARY htpasswd: install it with apt-get install apache2-utils');
  const { stdout } = await execFileP(bin, ['-Bbn', username, password], { timeout: 30_000 });
  return stdout.trim() + '\n';
}

function configYaml(dataDir: string, port: number, htpasswdPath: string | undefined): string {
  return [
    'version: 0.1',
    'log:',
    '  level: info',
    '  formatter: text',
    '  accesslog:',
    '    disabled: false',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${JSON.stringify(dataDir)}`,
    '  delete:',
    '    enabled: false',
    '  maintenance:',
    '    uploadpurging:',
    '      enabled: false',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    '  secret: oci-registry-e2e-secret',
    ...(htpasswdPath ? ['auth:', '  htpasswd:', '    realm: oci-e2e', `    path: ${JSON.stringify(htpasswdPath)}`] : []),
    '',
  ].join('\n');
}

async function waitUntilServing(url: string, child: ChildProcess, logPath: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(
        `docker-registry exited (${child.exitCode ?? child.signalCode}) before serving:\n${tail(readFileSync(logPath, 'utf8'))}`,
      );
    }
    try {
      const res = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(2_000) });
      await res.arrayBuffer();
      if (res.status === 200 || res.status === 401) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      throw new Error(`docker-registry at ${url} did not answer GET /v2/ within ${timeoutMs} ms:\n${tail(readFileSync(logPath, 'utf8'))}`);
    }
    await sleep(50);
  }
}

export async function startDockerRegistry(options: DockerRegistryOptions = {}): Promise<DockerRegistry> {
  const bin = findBinary(DOCKER_REGISTRY_BIN) ?? findBinary('docker-registry');
  if (!bin) throw new Error('MISSING BINARY docker-registry: install it with apt-get install docker-registry');
  const dir = await makeTempDir('registry');
  const dataDir = join(dir, 'data');
  const logPath = join(dir, 'registry.log');
  let htpasswdPath: string | undefined;
  if (options.htpasswd) {
    htpasswdPath = join(dir, 'htpasswd');
    await writeFile(htpasswdPath, await makeHtpasswd(options.htpasswd.username, options.htpasswd.password), { mode: 0o600 });
  }

  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const configPath = join(dir, 'config.yml');
    await writeFile(configPath, configYaml(dataDir, port, htpasswdPath));
    // The child writes straight into the file, so the access log is complete as soon as it answers.
    const fd = openSync(logPath, 'a');
    const child = spawn(bin, ['serve', configPath], { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    const forget = trackChild(child);
    const url = `http://127.0.0.1:${port}`;
    try {
      await waitUntilServing(url, child, logPath, 20_000);
    } catch (e) {
      await stopChild(child, 'SIGKILL');
      forget();
      lastError = e;
      if (/address already in use/i.test((e as Error).message)) continue;
      throw e;
    }
    const pid = child.pid ?? -1;
    const keep = options.keep === true || Boolean(process.env.OCI_E2E_KEEP);
    let stopped = false;
    const accessLog = (): AccessLogEntry[] => parseAccessLog(readFileSync(logPath, 'utf8'));
    return {
      url,
      host: `127.0.0.1:${port}`,
      port,
      pid,
      dir,
      logPath,
      accessLog,
      blobGets(digest: string): number {
        const suffix = `/blobs/${digest}`;
        return accessLog().filter((e) => e.method === 'GET' && e.path.startsWith('/v2/') && e.path.endsWith(suffix)).length;
      },
      async stop(): Promise<void> {
        if (stopped) return;
        stopped = true;
        await stopChild(child, 'SIGTERM', 10_000);
        forget();
        if (!keep) await rm(dir, { recursive: true, force: true });
      },
    };
  }
  throw lastError instanceof Error ? lastError : new Error(String(lastError));
}
