/** Small helpers shared by the benchmark modules: processes, ports, temp dirs, statistics. */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { request } from 'undici';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function log(msg: string): void {
  const t = new Date().toISOString().slice(11, 19);
  process.stderr.write(`[bench ${t}] ${msg}\n`);
}

/** A port that was free a moment ago on 127.0.0.1 (bind to 0, read, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export async function tempDir(parent: string, prefix: string): Promise<string> {
  return mkdtemp(join(parent, prefix));
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
}

export function defaultTmpParent(): string {
  return process.env['BENCH_TMPDIR'] ?? tmpdir();
}

/** Absolute path of an executable on PATH, or undefined. */
export function which(bin: string): string | undefined {
  if (bin.includes('/')) return existsSync(bin) ? bin : undefined;
  for (const dir of (process.env['PATH'] ?? '/usr/local/bin:/usr/bin:/bin').split(':')) {
    for (const d of [dir, '/usr/sbin', '/sbin']) {
      const p = join(d, bin);
      if (existsSync(p)) return p;
    }
  }
  return undefined;
}

/** Runs a command to completion; resolves with stdout/stderr (rejects on spawn failure only). */
export function run(
  cmd: string,
  args: string[],
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      { timeout: opts.timeoutMs ?? 600_000, maxBuffer: 64 * 1024 * 1024, env: opts.env ?? process.env, cwd: opts.cwd },
      (error, stdout, stderr) => {
        if (error && typeof (error as NodeJS.ErrnoException).code === 'string') {
          reject(error);
          return;
        }
        const code = error ? ((error as unknown as { code?: number }).code ?? 1) : 0;
        resolve({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
  });
}

/** Every PID spawned by the bench, so that an interrupted run leaves nothing behind. */
const spawned = new Set<ManagedProcess>();

export interface ManagedProcess {
  name: string;
  pid: number;
  child: ChildProcess;
  /** Output lines (stdout and stderr) kept when `keepLines` (the most recent 2000). */
  lines: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  alive(): boolean;
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function startProcess(
  name: string,
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; onLine?: (line: string) => void; keepLines?: boolean } = {},
): ManagedProcess {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env, cwd: opts.cwd });
  if (child.pid === undefined) throw new Error(`could not start ${name} (${cmd})`);
  const lines: string[] = [];
  const keep = opts.keepLines ?? true;
  for (const stream of [child.stdout, child.stderr]) {
    if (!stream) continue;
    createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => {
      if (keep) {
        lines.push(line);
        if (lines.length > 2000) lines.splice(0, lines.length - 2000);
      }
      opts.onLine?.(line);
    });
  }
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const proc: ManagedProcess = {
    name,
    pid: child.pid,
    child,
    lines,
    exited,
    alive: () => child.exitCode === null && child.signalCode === null,
    async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000) {
      if (proc.alive()) child.kill(signal);
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((r) => {
        timer = setTimeout(() => r('timeout'), timeoutMs);
      });
      const first = await Promise.race([exited, timeout]);
      clearTimeout(timer);
      if (first !== 'timeout') return first;
      // Also the children of this PID (nginx workers), by PID.
      for (const pid of descendants(child.pid ?? -1)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
      if (proc.alive()) child.kill('SIGKILL');
      return exited;
    },
  };
  spawned.add(proc);
  void exited.then(() => spawned.delete(proc));
  return proc;
}

/** SIGTERM then SIGKILL for everything still running (used on exit and on SIGINT). */
export function killAllSpawned(): void {
  for (const p of spawned) {
    const kids = descendants(p.pid);
    try {
      if (p.alive()) p.child.kill('SIGKILL');
    } catch {
      // gone
    }
    for (const pid of kids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
}

/** Polls `url` until it answers with `status` (default: any < 500). */
export async function waitHttp(url: string, timeoutMs: number, proc?: ManagedProcess, okStatus?: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (proc && !proc.alive()) {
      throw new Error(`${proc.name} exited before answering ${url}:\n${proc.lines.slice(-30).join('\n')}`);
    }
    try {
      const res = await request(url, { method: 'GET', headersTimeout: 2000, bodyTimeout: 2000 });
      await res.body.dump();
      if (okStatus === undefined ? res.statusCode < 500 : res.statusCode === okStatus) return;
      last = `HTTP ${res.statusCode}`;
    } catch (e) {
      last = (e as Error).message;
    }
    await sleep(50);
  }
  throw new Error(`${url} did not answer within ${timeoutMs} ms (${last})${proc ? `\n${proc.lines.slice(-30).join('\n')}` : ''}`);
}

// ---------- /proc ----------

let childrenCache: { at: number; map: Map<number, number[]> } | undefined;

/** ppid -> children over all of /proc (cached for 500 ms). */
function childrenMap(): Map<number, number[]> {
  if (childrenCache && Date.now() - childrenCache.at < 500) return childrenCache.map;
  const map = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ppid = Number(rest[1]);
      const list = map.get(ppid) ?? [];
      list.push(Number(entry));
      map.set(ppid, list);
    } catch {
      // exited
    }
  }
  childrenCache = { at: Date.now(), map };
  return map;
}

/** All descendants of `pid` (not including it). */
export function descendants(pid: number): number[] {
  const map = childrenMap();
  const out: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const p = queue.shift()!;
    for (const c of map.get(p) ?? []) {
      out.push(c);
      queue.push(c);
    }
  }
  return out;
}

export function processTree(pid: number): number[] {
  return [pid, ...descendants(pid)];
}

/** VmRSS and VmHWM in bytes, or undefined when the process is gone. */
export function memOf(pid: number): { rss: number; hwm: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = /^VmRSS:\s+(\d+) kB/m.exec(status);
    const hwm = /^VmHWM:\s+(\d+) kB/m.exec(status);
    if (!rss || !hwm) return undefined;
    return { rss: Number(rss[1]) * 1024, hwm: Number(hwm[1]) * 1024 };
  } catch {
    return undefined;
  }
}

let clkTck = 100;
export async function initClockTicks(): Promise<void> {
  try {
    const r = await run('getconf', ['CLK_TCK']);
    const n = Number(r.stdout.trim());
    if (n > 0) clkTck = n;
  } catch {
    // keep 100
  }
}

/** utime+stime of one process in seconds (0 when gone). */
export function cpuOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields 14 and 15 of stat; `rest` starts at field 3.
    return (Number(rest[11]) + Number(rest[12])) / clkTck;
  } catch {
    return 0;
  }
}

/** CPU seconds of a process tree (the root and its current descendants). */
export function cpuOfTree(pid: number): number {
  return processTree(pid).reduce((sum, p) => sum + cpuOf(p), 0);
}

// ---------- statistics ----------

export interface Stat {
  median: number;
  min: number;
  max: number;
  n: number;
  samples: number[];
}

export function stat(samples: number[]): Stat | undefined {
  const s = samples.filter((x) => Number.isFinite(x));
  if (s.length === 0) return undefined;
  const sorted = [...s].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { median, min: sorted[0]!, max: sorted[sorted.length - 1]!, n: sorted.length, samples: s };
}

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

/** States (R, S, D, ...) of every thread of a process tree. */
function threadStates(pid: number): string[] {
  const out: string[] = [];
  for (const p of processTree(pid)) {
    let tids: string[];
    try {
      tids = readdirSync(`/proc/${p}/task`);
    } catch {
      continue;
    }
    for (const tid of tids) {
      try {
        const stat = readFileSync(`/proc/${p}/task/${tid}/stat`, 'utf8');
        out.push(stat.charAt(stat.lastIndexOf(')') + 2));
      } catch {
        // exited
      }
    }
  }
  return out;
}

/**
 * Waits until a process tree is idle: less than `maxCores` CPU over the last `quietMs` and no thread
 * in disk sleep (an fsync of a just-downloaded blob, a background fill). Returns the ms waited.
 */
export async function waitIdle(pid: number, opts: { quietMs?: number; maxCores?: number; timeoutMs?: number } = {}): Promise<number> {
  const quietMs = opts.quietMs ?? 1000;
  const maxCores = opts.maxCores ?? 0.05;
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  const started = Date.now();
  const window: Array<{ at: number; cpu: number; busy: boolean }> = [];
  while (Date.now() < deadline) {
    const now = Date.now();
    window.push({ at: now, cpu: cpuOfTree(pid), busy: threadStates(pid).includes('D') });
    while (window.length > 0 && now - window[0]!.at > quietMs) window.shift();
    const first = window[0]!;
    if (now - started >= quietMs && now - first.at >= quietMs * 0.8) {
      const cores = (window[window.length - 1]!.cpu - first.cpu) / ((now - first.at) / 1000);
      if (cores <= maxCores && !window.some((w) => w.busy)) return now - started;
    }
    await sleep(100);
  }
  return Date.now() - started;
}
