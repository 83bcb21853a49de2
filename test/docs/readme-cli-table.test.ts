/**
 * The README's flag tables (`| flag | env | default | meaning |`) against `--help` of every command:
 * each flag a command lists has a row naming it and its environment variable, and each row names a
 * flag that exists, with that variable.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { cliHelp, type CliOption } from '../helpers/cli-help.js';

const README = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'README.md');

interface Row {
  /** The last command word before the flag ('' for global flags): `s3`, `ls`, `containerd`. */
  command: string;
  flag: string;
  env: string | undefined;
  line: number;
}

/** Rows of every flag table; a cell like `s3 --bucket B` names command s3 and flag --bucket. */
export function readmeFlagRows(text: string): Row[] {
  const rows: Row[] = [];
  let inTable = false;
  text.split('\n').forEach((line, i) => {
    if (/^\| *flag *\| *env *\| *default *\| *meaning *\|/.test(line)) {
      inTable = true;
      return;
    }
    if (!line.startsWith('|')) {
      inTable = false;
      return;
    }
    if (!inTable || /^\|-/.test(line)) return;
    const cells = line
      .split('|')
      .slice(1, -1)
      .map((c) => c.trim());
    const flagCell = (cells[0] ?? '').replace(/`/g, '');
    const words = flagCell.split(/\s+/);
    const firstFlag = words.findIndex((w) => w.startsWith('-'));
    const command = firstFlag > 0 ? (words[firstFlag - 1] ?? '') : '';
    const flags = flagCell.match(/--[a-z0-9-]+/g) ?? [];
    const envs = (cells[1] ?? '').match(/[A-Z][A-Z0-9_]+/g) ?? [];
    flags.forEach((flag, k) => rows.push({ command, flag, env: envs[k], line: i + 1 }));
  });
  return rows;
}

/** Every command path and its help, depth first: [], [filesystem], [filesystem, ls], ... */
function allHelp(): Array<{ path: string[]; options: CliOption[] }> | string {
  const out: Array<{ path: string[]; options: CliOption[] }> = [];
  const walk = (p: string[]): string | undefined => {
    const help = cliHelp(p);
    if (typeof help === 'string') return help;
    out.push({ path: p, options: [...help.options.values()].filter((o) => o.flag !== '--help' && o.flag !== '--version') });
    for (const c of help.commands) {
      const err = walk([...p, c]);
      if (err) return err;
    }
    return undefined;
  };
  return walk([]) ?? out;
}

t.test('every flag of every command, and its environment variable, is in a README flag table, and every row is a real flag', async (t) => {
  const rows = readmeFlagRows(readFileSync(README, 'utf8'));
  t.ok(rows.length > 40, `the README has its flag tables (${rows.length} rows)`);
  const help = allHelp();
  if (typeof help === 'string') {
    t.fail(`cannot read --help: ${help}`);
    return;
  }
  const commandNames = new Set(help.map((h) => h.path.at(-1) ?? ''));
  t.ok(
    commandNames.has('config') && commandNames.has('ls') && commandNames.has('containerd'),
    'the walk reached the admin and client-config commands',
  );
  const known = new Map<string, CliOption>();
  for (const { path: p, options } of help) {
    const command = p.at(-1) ?? '';
    for (const o of options) {
      known.set(`${command} ${o.flag}`, o);
      const row = rows.find((r) => r.command === command && r.flag === o.flag);
      if (!row) {
        t.fail(`README has no row for \`${[...p, o.flag].join(' ')}\`${o.env ? ` (env ${o.env})` : ''}`);
        continue;
      }
      t.equal(row.env, o.env, `README line ${row.line}: ${[...p, o.flag].join(' ')} reads env ${o.env ?? '(none)'}`);
    }
  }
  for (const row of rows) {
    t.ok(
      known.has(`${row.command} ${row.flag}`),
      `README line ${row.line}: \`${row.command ? `${row.command} ` : ''}${row.flag}\` is a flag of ${row.command || 'the program'}`,
    );
  }
});
