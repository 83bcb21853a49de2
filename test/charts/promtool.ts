/**
 * Prometheus's promtool (Debian package `prometheus`, installed by .ci/run) for the monitoring chart
 * tests: it parses the alert rules and the dashboard's PromQL as Prometheus itself would, and runs
 * rule unit tests (`promtool test rules`) on synthetic series.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import yaml from 'js-yaml';
import type { RunResult } from './render.js';

/** Runs promtool with `files` (name -> content) written to a temp folder that is its working directory. */
export function promtool(args: string[], files: Record<string, unknown> = {}): RunResult {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'oci-registry-promtool-'));
  try {
    for (const [name, content] of Object.entries(files)) {
      writeFileSync(path.join(dir, name), typeof content === 'string' ? content : yaml.dump(content, { lineWidth: -1 }));
    }
    const r = spawnSync('promtool', args, { cwd: dir, encoding: 'utf8', timeout: 120_000 });
    if (r.error) return { status: null, stdout: r.stdout ?? '', stderr: r.error.message };
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Why promtool cannot run here, or undefined when it can. */
export function promtoolMissing(): string | undefined {
  const r = promtool(['--version']);
  return r.status === 0 ? undefined : `promtool --version: ${r.stderr.trim() || `exit ${r.status}`}`;
}
