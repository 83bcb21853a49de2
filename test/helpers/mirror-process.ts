/**
 * Runs the built mirror (`node dist/cli/main.js`) as a child process, the way users run it:
 *
 *   node dist/cli/main.js --log-level info --listen 127.0.0.1:0 [--upstream-config-file F] ...args filesystem --root ROOT
 *
 * (no `filesystem --root` appended when `args` already name a storage subcommand). The port is
 * learned from the `"msg":"listening"` JSON log line's `"url"`. dist/ is rebuilt with
 * `npx tsc -p tsconfig.json` when it is missing or older than src/ (once, under a lock, for all
 * parallel test files).
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const MIRROR_MAIN = join(REPO_ROOT, 'dist', 'cli', 'main.js');
/**
 * OCI_E2E_MIRROR_MAIN=/path/to/main.js runs that script instead of dist/cli/main.js, without building
 * (e.g. an installed package, or a stand-in while the mirror is being written).
 */
const MAIN_OVERRIDE = process.env['OCI_E2E_MIRROR_MAIN'];
const BUILD_STAMP = join(REPO_ROOT, 'dist', '.build-stamp');
const BUILD_LOCK = join(REPO_ROOT, 'node_modules', '.cache', 'oci-registry-build.lock');

export interface MirrorProcessOptions {
  /** Cache root for the filesystem storage. */
  root: string;
  /** Upstream config YAML; written to a temp file and passed as --upstream-config-file. */
  configYaml?: string;
  /** Extra arguments before the storage subcommand (or including one, e.g. `s3 --host ...`). */
  args?: string[];
  /** Added to the environment. */
  env?: Record<string, string>;
  /** Time to wait for the listening line. Default 20 s. */
  startTimeoutMs?: number;
  /** Log level passed with --log-level. Default info. */
  logLevel?: string;
}

export interface MirrorProcess {
  /** `http://127.0.0.1:PORT` */
  url: string;
  /** `127.0.0.1:PORT`, as used in image references. */
  host: string;
  port: number;
  pid: number;
  /** Every stdout and stderr line so far (stdout is pino JSON). */
  logLines: string[];
  /** The stdout lines that parse as JSON objects. */
  logs(): Record<string, unknown>[];
  /** Resolves with the exit status once the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends `signal` (default SIGTERM) to this PID, waits up to 10 s, then SIGKILLs; resolves with the exit status. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGKILL to this PID and wait. */
  kill(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const STORAGE_SUBCOMMANDS = new Set(['filesystem', 's3']);

function newestMtime(path: string): number {
  let newest = 0;
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  for (const entry of readdirSync(path, { withFileTypes: true })) {
    const p = join(path, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

/** True when dist/ was built successfully after the last change to src/, tsconfig.json or package.json. */
export function distIsFresh(): boolean {
  let stamp: number;
  try {
    stamp = statSync(BUILD_STAMP).mtimeMs;
    statSync(MIRROR_MAIN);
  } catch {
    return false;
  }
  const sources = Math.max(
    newestMtime(join(REPO_ROOT, 'src')),
    newestMtime(join(REPO_ROOT, 'tsconfig.json')),
    newestMtime(join(REPO_ROOT, 'package.json')),
  );
  return stamp >= sources;
}

function runTsc(): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const started = Date.now();
    execFile(
      process.execPath,
      [join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(REPO_ROOT, 'tsconfig.json')],
      { cwd: REPO_ROOT, timeout: 300_000, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) {
          reject(new Error(`building the mirror with tsc -p tsconfig.json failed:\n${stdout}${stderr}`));
          return;
        }
        // The stamp's mtime is the build's start: a source edited during the build makes the next call rebuild.
        try {
          mkdirSync(dirname(BUILD_STAMP), { recursive: true });
          writeFileSync(BUILD_STAMP, `${new Date(started).toISOString()}\n`);
          utimesSync(BUILD_STAMP, new Date(started), new Date(started));
          resolvePromise();
        } catch (e) {
          reject(e as Error);
        }
      },
    );
  });
}

let buildPromise: Promise<void> | undefined;

/**
 * Builds dist/ if it is stale. Parallel test processes serialize on a lock directory; a lock older
 * than 5 minutes is considered abandoned.
 */
export function ensureMirrorBuilt(): Promise<void> {
  buildPromise ??= (async () => {
    if (distIsFresh()) return;
    mkdirSync(dirname(BUILD_LOCK), { recursive: true });
    const deadline = Date.now() + 360_000;
    for (;;) {
      try {
        mkdirSync(BUILD_LOCK);
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        try {
          if (Date.now() - statSync(BUILD_LOCK).mtimeMs > 300_000) rmSync(BUILD_LOCK, { recursive: true, force: true });
        } catch {
          // released meanwhile
        }
        if (Date.now() > deadline) throw new Error(`timed out waiting for the build lock ${BUILD_LOCK}`, { cause: e });
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    try {
      if (!distIsFresh()) await runTsc();
      if (!existsSync(MIRROR_MAIN)) {
        throw new Error(`tsc -p tsconfig.json succeeded but ${MIRROR_MAIN} does not exist: is src/cli/main.ts written?`);
      }
    } finally {
      rmSync(BUILD_LOCK, { recursive: true, force: true });
    }
  })();
  // A failed build is retried by the next caller (sources may have been fixed meanwhile).
  buildPromise.catch(() => {
    buildPromise = undefined;
  });
  return buildPromise;
}

/**
 * The test process's environment minus what tap injects for itself: NODE_OPTIONS carries tap's
 * --import/--loader hooks (TypeScript, coverage), which would load into the mirror and slow it down.
 */
function childEnv(extra: Record<string, string> | undefined): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env['NODE_OPTIONS'];
  for (const key of Object.keys(env)) {
    if (key.startsWith('_TAPJS') || key.startsWith('TAPJS_') || key === 'NODE_V8_COVERAGE') delete env[key];
  }
  return { ...env, ...extra };
}

export async function startMirrorProcess(options: MirrorProcessOptions): Promise<MirrorProcess> {
  if (!MAIN_OVERRIDE) await ensureMirrorBuilt();
  const args = options.args ?? [];
  let configDir: string | undefined;
  const cliArgs = [MAIN_OVERRIDE ?? MIRROR_MAIN, '--log-level', options.logLevel ?? 'info', '--listen', '127.0.0.1:0'];
  if (options.configYaml !== undefined) {
    configDir = await mkdtemp(join(tmpdir(), 'oci-e2e-mirror-config-'));
    const file = join(configDir, 'upstreams.yaml');
    await writeFile(file, options.configYaml);
    cliArgs.push('--upstream-config-file', file);
  }
  cliArgs.push(...args);
  if (!args.some((a) => STORAGE_SUBCOMMANDS.has(a))) cliArgs.push('filesystem', '--root', options.root);

  const child = spawn(process.execPath, cliArgs, {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: childEnv(options.env),
  });
  const pid = child.pid ?? -1;
  const logLines: string[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) =>
    child.once('exit', (code, signal) => res({ code, signal })),
  );
  const killOnExit = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);
  void exited.then(async () => {
    process.removeListener('exit', killOnExit);
    if (configDir) await rm(configDir, { recursive: true, force: true });
  });

  let onLine: ((line: string) => void) | undefined;
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => {
      logLines.push(line);
      onLine?.(line);
    });
  }

  const timeoutMs = options.startTimeoutMs ?? 20_000;
  let url: string;
  try {
    url = await new Promise<string>((resolveUrl, reject) => {
      const timer = setTimeout(() => reject(new Error(`no "listening" log line within ${timeoutMs} ms`)), timeoutMs);
      const check = (line: string): void => {
        if (!line.includes('"listening"')) return;
        try {
          const doc = JSON.parse(line) as { msg?: unknown; url?: unknown };
          if (doc.msg === 'listening' && typeof doc.url === 'string') {
            clearTimeout(timer);
            resolveUrl(doc.url.replace(/\/+$/, ''));
          }
        } catch {
          // not JSON
        }
      };
      onLine = check;
      logLines.forEach(check);
      void exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`the mirror exited (${code ?? signal}) before listening`));
      });
    });
  } catch (e) {
    killOnExit();
    await exited;
    throw new Error(`${(e as Error).message}\ncommand: node ${cliArgs.join(' ')}\noutput:\n${logLines.join('\n')}`, { cause: e });
  } finally {
    onLine = undefined;
  }

  const parsed = new URL(url);
  const port = Number(parsed.port);
  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((r) => {
      timer = setTimeout(() => r('timeout'), 10_000);
    });
    const first = await Promise.race([exited, timeout]);
    clearTimeout(timer);
    if (first !== 'timeout') return first;
    child.kill('SIGKILL');
    return exited;
  };
  return {
    url,
    host: parsed.host,
    port,
    pid,
    logLines,
    logs: () =>
      logLines.flatMap((l) => {
        if (!l.startsWith('{')) return [];
        try {
          const doc = JSON.parse(l) as unknown;
          return typeof doc === 'object' && doc !== null ? [doc as Record<string, unknown>] : [];
        } catch {
          return [];
        }
      }),
    exited,
    stop,
    kill: () => stop('SIGKILL'),
  };
}
