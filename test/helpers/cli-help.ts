/**
 * `oci-registry [command...] --help`, parsed: the options each command lists (flag, whether it takes a
 * value, its environment variable) and its subcommands. Runs src/ through tap's TypeScript loader when
 * present, else dist/.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface CliOption {
  flag: string;
  /** Whether the flag takes a value (`--flag <value>`). */
  takesValue: boolean;
  /** The environment variable commander reads it from, if any. */
  env: string | undefined;
}

export interface CliHelp {
  options: Map<string, CliOption>;
  commands: string[];
}

/** The help of `oci-registry` (no command), of one command (`s3`) or of a command path (`['s3', 'ls']`); or why it failed. */
export function cliHelp(command?: string | readonly string[]): CliHelp | string {
  const loader = process.execArgv.find((a) => a.includes('@tapjs/typescript'));
  const entry = loader ? path.join(repoRoot, 'src', 'cli', 'main.ts') : path.join(repoRoot, 'dist', 'cli', 'main.js');
  if (!existsSync(entry)) return `${entry} does not exist`;
  const commands = command === undefined ? [] : typeof command === 'string' ? [command] : [...command];
  const args = [...(loader ? [loader] : []), entry, ...commands, '--help'];
  const env: NodeJS.ProcessEnv = { ...process.env, COLUMNS: '400' };
  for (const k of Object.keys(env)) {
    // Defaults from the environment would only change the help text.
    if (/^(LISTEN|UPSTREAM_|DEFAULT_NAMESPACE|LOG_LEVEL|S3_|FILESYSTEM_ROOT|SPOOL_DIR|METRICS_)/.test(k)) delete env[k];
  }
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', env, maxBuffer: 16 * 1024 * 1024, timeout: 120_000 });
  if (r.status !== 0) return `${[process.execPath, ...args].join(' ')} failed (${r.status}): ${(r.stderr ?? '').slice(0, 2000)}`;
  const options = new Map<string, CliOption>();
  const subcommands: string[] = [];
  let section = '';
  // Help wraps at 80 columns off a terminal, so an option's text (and its `env: NAME`) may span lines.
  let last: { option: CliOption; text: string } | undefined;
  const finish = () => {
    const e = last && /env: ([A-Z0-9_]+)/.exec(last.text.replace(/\s+/g, ' '));
    if (last && e) last.option.env = e[1];
    last = undefined;
  };
  for (const line of r.stdout.split('\n')) {
    if (/^\S.*:$/.test(line)) {
      finish();
      section = line.slice(0, -1);
      continue;
    }
    if (section === 'Options') {
      const m = /^ {2}(?:-\w, )?(--[a-z0-9-]+)( <[^>]+>| \[[^\]]+\])?/.exec(line);
      if (m) {
        finish();
        last = { option: { flag: m[1]!, takesValue: m[2] !== undefined, env: undefined }, text: line };
        options.set(m[1]!, last.option);
      } else if (last) {
        last.text += ` ${line}`;
      }
    } else if (section === 'Commands') {
      const m = /^ {2}([a-z0-9-]+)/.exec(line);
      if (m && m[1] !== 'help') subcommands.push(m[1]!);
    }
  }
  finish();
  return { options, commands: subcommands };
}
