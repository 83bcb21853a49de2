/**
 * Runs a one-shot command of the built CLI (`node dist/cli/main.js ARGS...`, e.g. an admin command on a
 * cache: `filesystem --root DIR import FILE`) and collects its exit status and output. dist/ is built
 * first when stale (the same lock as startMirrorProcess).
 */
import { spawn } from 'node:child_process';
import { ensureMirrorBuilt, MIRROR_MAIN, REPO_ROOT } from './mirror-process.js';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface RunCliOptions {
  env?: Record<string, string>;
  /** Default 120 s; the child is SIGKILLed (by its PID) after that. */
  timeoutMs?: number;
}

export async function runCli(args: readonly string[], options: RunCliOptions = {}): Promise<CliResult> {
  const main = process.env['OCI_E2E_MIRROR_MAIN'];
  if (!main) await ensureMirrorBuilt();
  const env: NodeJS.ProcessEnv = { ...process.env };
  // tap's hooks (TypeScript loader, coverage) must not load into the child.
  delete env['NODE_OPTIONS'];
  for (const key of Object.keys(env)) {
    if (key.startsWith('_TAPJS') || key.startsWith('TAPJS_') || key === 'NODE_V8_COVERAGE') delete env[key];
  }
  const child = spawn(process.execPath, [main ?? MIRROR_MAIN, ...args], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...env, ...options.env },
  });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (c: Buffer) => out.push(c));
  child.stderr.on('data', (c: Buffer) => err.push(c));
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
  const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
  clearTimeout(timer);
  return { code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
}
