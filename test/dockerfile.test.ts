/**
 * Static checks of the container image definition: the Dockerfile is parsed
 * (instructions, line continuations, stages) and its wiring is compared with
 * the repository (package.json bin, files it copies, .dockerignore).
 * No Docker daemon is needed.
 */
import t from 'tap';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// ---------------------------------------------------------------------------
// A small Dockerfile parser
// ---------------------------------------------------------------------------

interface Instruction {
  /** Upper-case keyword: FROM, RUN, COPY, ... */
  keyword: string;
  /** Everything after the keyword, continuation lines joined. */
  rest: string;
  /** `--name=value` / `--name` flags at the start of `rest` (COPY --from, RUN --mount, ...). */
  flags: Record<string, string>;
  /** `rest` without the flags. */
  body: string;
  /** The JSON (exec) form parsed, when `body` is a JSON array of strings. */
  json: string[] | undefined;
  /** 1-based line where the instruction starts. */
  line: number;
}

interface Stage {
  base: string;
  name: string | undefined;
  index: number;
  instructions: Instruction[];
}

interface Dockerfile {
  /** Instructions before the first FROM (global ARGs). */
  preamble: Instruction[];
  stages: Stage[];
}

function parseDockerfile(text: string): Dockerfile {
  const lines = text.split(/\r?\n/);
  // Parser directives: only at the very top, `# escape=`` changes the continuation character.
  let escape = '\\';
  for (const line of lines) {
    const m = /^#\s*([a-zA-Z]+)\s*=\s*(\S+)\s*$/.exec(line);
    if (!m) break;
    if (m[1]!.toLowerCase() === 'escape') escape = m[2]!;
  }

  const instructions: Instruction[] = [];
  let current: { text: string; line: number } | undefined;
  lines.forEach((raw, i) => {
    const trimmed = raw.trim();
    // Comment lines are removed before continuation handling, even inside a continued instruction.
    if (trimmed.startsWith('#')) return;
    if (current === undefined && trimmed === '') return;
    const continued = trimmed.endsWith(escape);
    const content = continued ? trimmed.slice(0, -escape.length).trimEnd() : trimmed;
    if (current === undefined) current = { text: content, line: i + 1 };
    else current.text += ' ' + content;
    if (!continued) {
      instructions.push(toInstruction(current.text, current.line));
      current = undefined;
    }
  });
  if (current !== undefined) instructions.push(toInstruction(current.text, current.line));

  const result: Dockerfile = { preamble: [], stages: [] };
  for (const ins of instructions) {
    if (ins.keyword === 'FROM') {
      const words = ins.body.split(/\s+/);
      const base = words[0] ?? '';
      const name = words.length >= 3 && words[1]!.toUpperCase() === 'AS' ? words[2]!.toLowerCase() : undefined;
      result.stages.push({ base, name, index: result.stages.length, instructions: [] });
    } else if (result.stages.length === 0) {
      result.preamble.push(ins);
    } else {
      result.stages[result.stages.length - 1]!.instructions.push(ins);
    }
  }
  return result;
}

function toInstruction(text: string, line: number): Instruction {
  const m = /^(\S+)\s*(.*)$/s.exec(text.trim());
  const keyword = (m?.[1] ?? '').toUpperCase();
  const rest = (m?.[2] ?? '').trim();
  const flags: Record<string, string> = {};
  let body = rest;
  for (;;) {
    const f = /^--([a-zA-Z-]+)(?:=(\S*))?\s*/.exec(body);
    if (!f) break;
    flags[f[1]!] = f[2] ?? 'true';
    body = body.slice(f[0].length);
  }
  let json: string[] | undefined;
  if (body.startsWith('[')) {
    try {
      const parsed: unknown = JSON.parse(body);
      if (Array.isArray(parsed) && parsed.every((x) => typeof x === 'string')) json = parsed;
    } catch {
      json = undefined;
    }
  }
  return { keyword, rest, flags, body, json, line };
}

/** Global ARGs (declared before the first FROM) with their defaults, `overrides` (--build-arg) applied. */
function globalArgs(df: Dockerfile, overrides: Record<string, string> = {}): Map<string, string | undefined> {
  const args = new Map<string, string | undefined>();
  for (const ins of df.preamble) {
    if (ins.keyword !== 'ARG') continue;
    for (const word of words(ins.body)) {
      const eq = word.indexOf('=');
      if (eq < 0) args.set(word, undefined);
      else args.set(word.slice(0, eq), word.slice(eq + 1));
    }
  }
  // --build-arg only sets ARGs the Dockerfile declares.
  for (const [k, v] of Object.entries(overrides)) if (args.has(k)) args.set(k, v);
  return args;
}

/** Docker's variable substitution in a FROM line: `$X`, `${X}`, `${X:-word}`, `${X:+word}`. */
function expandArgs(text: string, args: Map<string, string | undefined>): string {
  const re = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([-+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g;
  return text.replace(re, (_m, braced: string | undefined, op: string | undefined, word: string | undefined, bare: string | undefined) => {
    const value = args.get((braced ?? bare)!);
    if (op === '-') return value ? value : (word ?? '');
    if (op === '+') return value ? (word ?? '') : '';
    return value ?? '';
  });
}

/** The stage's effective base image, following `FROM <earlier stage>` chains and global ARGs. */
function resolveBase(df: Dockerfile, stage: Stage, buildArgs: Record<string, string> = {}): string {
  const args = globalArgs(df, buildArgs);
  let s: Stage | undefined = stage;
  const seen = new Set<number>();
  while (s && !seen.has(s.index)) {
    seen.add(s.index);
    const base: string = expandArgs(s.base, args);
    const parent: Stage | undefined = df.stages.find((x) => x.index < s!.index && x.name === base.toLowerCase());
    if (!parent) return base;
    s = parent;
  }
  return expandArgs(stage.base, args);
}

/** Splits shell-form words, honouring simple quotes (enough for COPY/EXPOSE/VOLUME/USER). */
function words(body: string): string[] {
  const out: string[] = [];
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g;
  for (let m = re.exec(body); m; m = re.exec(body)) out.push(m[1] ?? m[2] ?? m[3]!);
  return out;
}

/** The last instruction of a kind in a stage (later ones override earlier ones). */
function last(stage: Stage, keyword: string): Instruction | undefined {
  return [...stage.instructions].reverse().find((i) => i.keyword === keyword);
}

// ---------------------------------------------------------------------------
// A .dockerignore matcher (Go filepath.Match patterns, `**`, `!` exceptions,
// a pattern that matches a directory excludes everything below it)
// ---------------------------------------------------------------------------

interface IgnoreRule {
  negate: boolean;
  pattern: string;
  re: RegExp;
}

function parseDockerignore(text: string): IgnoreRule[] {
  const rules: IgnoreRule[] = [];
  for (const raw of text.split(/\r?\n/)) {
    let line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    let negate = false;
    if (line.startsWith('!')) {
      negate = true;
      line = line.slice(1).trim();
    }
    // Docker cleans the pattern: no leading "/" or "./", no trailing "/".
    let pattern = path.posix.normalize(line).replace(/^\/+/, '').replace(/\/+$/, '');
    if (pattern.startsWith('./')) pattern = pattern.slice(2);
    rules.push({ negate, pattern, re: globToRegExp(pattern) });
  }
  return rules;
}

function globToRegExp(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') {
      if (pattern[i + 1] === '*') {
        // `**` matches any number of directories (including none).
        i++;
        if (pattern[i + 1] === '/') {
          i++;
          re += '(?:.*/)?';
        } else {
          re += '.*';
        }
      } else {
        re += '[^/]*';
      }
    } else if (c === '?') {
      re += '[^/]';
    } else if (c === '[') {
      const end = pattern.indexOf(']', i);
      if (end < 0) re += '\\[';
      else {
        re +=
          '[' +
          pattern
            .slice(i + 1, end)
            .replace(/^!/, '^')
            .replace(/\\/g, '\\\\') +
          ']';
        i = end;
      }
    } else if (c === '\\' && i + 1 < pattern.length) {
      re += '\\' + pattern[++i];
    } else {
      re += c.replace(/[.+^${}()|\]\\/]/g, (x) => '\\' + x);
    }
  }
  return new RegExp('^' + re + '$');
}

/** Whether Docker leaves `rel` (a repo-relative path) out of the build context. */
function isIgnored(rules: IgnoreRule[], rel: string): boolean {
  const clean = path.posix
    .normalize(rel)
    .replace(/^\.\/+/, '')
    .replace(/\/+$/, '');
  // The path itself or any parent directory matching a rule counts (Docker semantics).
  const candidates: string[] = [];
  const parts = clean.split('/');
  for (let n = 1; n <= parts.length; n++) candidates.push(parts.slice(0, n).join('/'));
  let ignored = false;
  for (const rule of rules) {
    if (candidates.some((c) => rule.re.test(c))) ignored = !rule.negate;
  }
  return ignored;
}

function listFiles(dir: string, base = ''): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const rel = base ? `${base}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...listFiles(path.join(dir, entry.name), rel));
    else out.push(rel);
  }
  return out;
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

const dockerfilePath = path.join(repoRoot, 'Dockerfile');
const dockerignorePath = path.join(repoRoot, '.dockerignore');

t.test('the parser', async (t) => {
  const df = parseDockerfile(
    [
      'ARG V=1',
      'FROM node:22-slim AS Build',
      '# comment',
      'RUN a \\',
      '  # a comment inside a continuation is dropped',
      '  && b',
      'COPY --chown=1:1 --from=build ["a b", "c"]',
      'FROM build',
      'CMD ["x"]',
    ].join('\n'),
  );
  t.equal(df.preamble.length, 1);
  t.equal(df.stages.length, 2);
  t.equal(df.stages[0]!.name, 'build');
  t.equal(df.stages[0]!.instructions[0]!.rest, 'a && b');
  t.same(df.stages[0]!.instructions[1]!.flags, { chown: '1:1', from: 'build' });
  t.same(df.stages[0]!.instructions[1]!.json, ['a b', 'c']);
  t.equal(resolveBase(df, df.stages[1]!), 'node:22-slim');
  t.same(last(df.stages[1]!, 'CMD')?.json, ['x']);

  const withArgs = parseDockerfile(
    ['ARG BASE=node:22-slim OTHER', 'FROM ${BASE} AS one', 'FROM $BASE', 'FROM ${OTHER:-debian:12}', 'FROM one'].join('\n'),
  );
  t.equal(resolveBase(withArgs, withArgs.stages[0]!), 'node:22-slim', '${BASE} takes the ARG default');
  t.equal(resolveBase(withArgs, withArgs.stages[1]!), 'node:22-slim', '$BASE too');
  t.equal(resolveBase(withArgs, withArgs.stages[2]!), 'debian:12', '${OTHER:-word} without a value is the word');
  t.equal(
    resolveBase(withArgs, withArgs.stages[3]!, { BASE: 'local/node:x' }),
    'local/node:x',
    'a build arg replaces the default, through stage references',
  );
  t.equal(resolveBase(withArgs, withArgs.stages[0]!, { UNDECLARED: 'x' }), 'node:22-slim', 'an undeclared build arg changes nothing');

  const rules = parseDockerignore('node_modules\n**/*.log\ndist/\n!dist/keep\n# c\n/data\n');
  t.ok(isIgnored(rules, 'node_modules'));
  t.ok(isIgnored(rules, 'node_modules/x/y.js'));
  t.ok(isIgnored(rules, 'a/b/c.log'));
  t.ok(isIgnored(rules, 'x.log'));
  t.ok(isIgnored(rules, 'dist/a.js'));
  t.notOk(isIgnored(rules, 'dist/keep'));
  t.ok(isIgnored(rules, 'data'));
  t.notOk(isIgnored(rules, 'src/node_modules_x.ts'));
  t.notOk(isIgnored(rules, 'src/a.ts'));
});

t.test('Dockerfile', async (t) => {
  if (!existsSync(dockerfilePath)) {
    t.fail('Dockerfile is missing at the repository root');
    return;
  }
  const df = parseDockerfile(readFileSync(dockerfilePath, 'utf8'));
  const final = df.stages[df.stages.length - 1];

  t.test('is multi-stage', async (t) => {
    t.ok(df.stages.length >= 2, `at least two stages (got ${df.stages.length})`);
    const named = df.stages.filter((s) => s.name !== undefined).map((s) => s.name);
    t.equal(new Set(named).size, named.length, 'stage names are unique');
  });
  if (!final) return;

  t.test('every stage builds on a Node.js LTS slim image', async (t) => {
    // LTS lines are the even majors; "slim" variants (optionally with a Debian codename).
    const lts = /^(?:docker\.io\/)?(?:library\/)?node:(\d+)(?:\.\d+){0,2}-(?:(?:bookworm|bullseye|trixie)-)?slim(?:@sha256:[0-9a-f]{64})?$/;
    for (const stage of df.stages) {
      const base = resolveBase(df, stage);
      const m = lts.exec(base);
      t.ok(m, `stage ${stage.name ?? stage.index} base ${base} is node:<lts>-slim`);
      if (m) {
        const major = Number(m[1]);
        t.ok(major % 2 === 0 && major >= 20, `node ${major} is an LTS line (even, >= 20)`);
      }
    }
    t.match(resolveBase(df, final), /^node:24-bookworm-slim/, 'final stage uses node:24-bookworm-slim');
  });

  t.test('the base image is the build argument BASE_IMAGE, node:24-bookworm-slim by default, for every stage', async (t) => {
    const declared = df.preamble.filter((i) => i.keyword === 'ARG' && /^BASE_IMAGE(?:=|$)/.test(i.body));
    t.equal(declared.length, 1, 'ARG BASE_IMAGE is declared once, before the first FROM');
    t.equal(globalArgs(df).get('BASE_IMAGE'), 'node:24-bookworm-slim', 'its default is node:24-bookworm-slim');
    const stageNames = new Set(df.stages.map((s) => s.name).filter((n) => n !== undefined));
    for (const stage of df.stages) {
      if (stageNames.has(stage.base.toLowerCase())) continue;
      t.match(stage.base, /^\$(?:\{BASE_IMAGE\}|BASE_IMAGE)$/, `stage ${stage.name ?? stage.index} is FROM \${BASE_IMAGE}`);
      t.equal(
        resolveBase(df, stage, { BASE_IMAGE: 'local/base:test' }),
        'local/base:test',
        `--build-arg BASE_IMAGE=... replaces stage ${stage.name ?? stage.index}'s base`,
      );
    }
  });

  t.test('the build stage compiles the project with dev dependencies', async (t) => {
    const build = df.stages.find((s) => s !== final && s.instructions.some((i) => i.keyword === 'RUN' && /\bnpm run build\b/.test(i.body)));
    t.ok(build, 'a stage other than the final one runs `npm run build`');
    if (!build) return;
    const install = build.instructions.find((i) => i.keyword === 'RUN' && /\bnpm ci\b/.test(i.body));
    t.ok(install, 'it installs with `npm ci`');
    t.notMatch(install?.body ?? '', /--omit[= ]dev|--production|--only[= ]prod/, 'with dev dependencies (TypeScript)');
    const idxInstall = build.instructions.indexOf(install!);
    const idxBuild = build.instructions.findIndex((i) => i.keyword === 'RUN' && /\bnpm run build\b/.test(i.body));
    t.ok(idxInstall < idxBuild, 'npm ci runs before npm run build');
  });

  t.test('the runtime stage has production dependencies only', async (t) => {
    const runs = final.instructions.filter((i) => i.keyword === 'RUN');
    const installs = runs.filter((i) => /\bnpm (?:ci|install|i)\b/.test(i.body));
    t.ok(installs.length >= 1, 'the final stage installs dependencies');
    for (const ins of installs) {
      t.match(ins.body, /\bnpm ci\b/, `line ${ins.line}: uses npm ci (lockfile)`);
      t.match(ins.body, /--omit[= ]dev\b/, `line ${ins.line}: without dev dependencies`);
    }
    t.notOk(
      runs.some((i) => /\bnpm run build\b|\btsc\b/.test(i.body)),
      'no compilation in the final stage',
    );
    const fromBuild = final.instructions.filter((i) => i.keyword === 'COPY' && i.flags['from'] !== undefined);
    t.ok(
      fromBuild.some((i) => /(?:^|\/)dist\/?$/.test(words(i.body)[0] ?? '')),
      'copies dist/ from the build stage',
    );
    const env = final.instructions
      .filter((i) => i.keyword === 'ENV')
      .map((i) => i.body)
      .join(' ');
    t.match(env, /NODE_ENV[= ]production/, 'NODE_ENV=production');
  });

  t.test('the final stage runs as a non-root user', async (t) => {
    const user = last(final, 'USER');
    t.ok(user, 'USER is set in the final stage');
    if (!user) return;
    const [name, group] = user.body.split(':');
    t.ok(name && name !== 'root' && name !== '0', `user ${user.body} is not root`);
    t.ok(group === undefined || (group !== 'root' && group !== '0'), 'group is not root');
    // Numeric, so Kubernetes can verify runAsNonRoot; the chart uses 10001.
    t.equal(name, '10001', 'numeric uid 10001 (the chart runAsUser)');
    const idxUser = final.instructions.indexOf(user);
    t.notOk(
      final.instructions.slice(idxUser + 1).some((i) => i.keyword === 'USER'),
      'no later USER switches back',
    );
  });

  t.test('ENTRYPOINT, CMD, EXPOSE, VOLUME', async (t) => {
    t.same(last(final, 'ENTRYPOINT')?.json, ['oci-registry'], 'ENTRYPOINT ["oci-registry"] (exec form)');
    t.same(last(final, 'CMD')?.json, ['--listen', '0.0.0.0:8080', 'filesystem', '--root', '/data'], 'CMD is the filesystem default');
    const exposed = final.instructions.filter((i) => i.keyword === 'EXPOSE').flatMap((i) => words(i.body));
    t.ok(
      exposed.some((p) => p === '8080' || p === '8080/tcp'),
      'EXPOSE 8080',
    );
    const volumes = final.instructions.filter((i) => i.keyword === 'VOLUME').flatMap((i) => i.json ?? words(i.body));
    t.ok(volumes.includes('/data'), 'VOLUME /data');
  });

  t.test('/data belongs to the runtime user, the bin is on PATH', async (t) => {
    const runs = final.instructions
      .filter((i) => i.keyword === 'RUN')
      .map((i) => i.body)
      .join(' && ');
    t.match(runs, /\bchown\b[^&;]*\b10001(?::10001)?\b[^&;]*\/data\b/, '/data is chowned to 10001');
    const pkg = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { bin?: Record<string, string> };
    const binTarget = pkg.bin?.['oci-registry'];
    t.equal(binTarget, 'dist/cli/main.js', 'package.json bin oci-registry');
    const workdir = last(final, 'WORKDIR')?.body ?? '/';
    const link = /\bln\s+-s(?:f)?\s+(\S+)\s+(\S+)/.exec(runs);
    t.ok(link, 'the bin is linked onto PATH');
    if (link && binTarget) {
      t.equal(path.posix.resolve(workdir, link[1]!), path.posix.join(workdir, binTarget), 'the link points at package.json bin');
      t.match(link[2]!, /^\/usr(?:\/local)?\/bin\/oci-registry$/, 'the link is named oci-registry in a PATH directory');
    }
    const build = df.stages.find((s) => s.instructions.some((i) => i.keyword === 'RUN' && /\bnpm run build\b/.test(i.body)));
    const buildRuns =
      build?.instructions
        .filter((i) => i.keyword === 'RUN')
        .map((i) => i.body)
        .join(' && ') ?? '';
    t.match(buildRuns, /chmod\s+(?:0?755|\+x|a\+x)\s+\S*dist\/cli\/main\.js/, 'the entry file is made executable');
    // The symlinked file runs through its shebang.
    const mainTs = path.join(repoRoot, 'src', 'cli', 'main.ts');
    t.ok(existsSync(mainTs), 'src/cli/main.ts exists');
    if (existsSync(mainTs)) {
      t.match(readFileSync(mainTs, 'utf8').split('\n')[0] ?? '', /^#!\/usr\/bin\/env node\b/, 'src/cli/main.ts starts with a node shebang');
    }
  });

  t.test('every local COPY source exists and is in the build context', async (t) => {
    const ignoreText = existsSync(dockerignorePath) ? readFileSync(dockerignorePath, 'utf8') : '';
    t.ok(existsSync(dockerignorePath), '.dockerignore exists');
    const rules = parseDockerignore(ignoreText);
    const sources = new Set<string>();
    for (const stage of df.stages) {
      for (const ins of stage.instructions) {
        if ((ins.keyword !== 'COPY' && ins.keyword !== 'ADD') || ins.flags['from'] !== undefined) continue;
        const args = ins.json ?? words(ins.body);
        for (const src of args.slice(0, -1)) sources.add(src);
      }
    }
    t.ok(sources.size > 0, 'the Dockerfile copies files from the context');
    for (const expected of ['package.json', 'package-lock.json', 'tsconfig.json', 'src', 'example.yaml']) {
      t.ok(
        [...sources].some((s) => s.replace(/^\.\//, '').replace(/\/$/, '') === expected),
        `the Dockerfile copies ${expected}`,
      );
    }
    for (const src of sources) {
      t.notMatch(src, /^(?:https?:|git@)/, `${src} is a local path`);
      t.notMatch(src, /[*?[]/, `${src} is not a wildcard (so a missing file fails the build)`);
      const abs = path.resolve(repoRoot, src);
      t.ok(abs.startsWith(repoRoot), `${src} stays inside the repository`);
      const exists = existsSync(abs);
      t.ok(exists, `COPY source ${src} exists in the repository`);
      t.notOk(isIgnored(rules, src), `COPY source ${src} is not excluded by .dockerignore`);
      if (exists && statSync(abs).isDirectory()) {
        const excluded = listFiles(abs, src.replace(/\/$/, '')).filter((f) => isIgnored(rules, f));
        t.same(excluded, [], `no file under ${src} is excluded by .dockerignore`);
      }
    }
  });

  t.test('.dockerignore keeps local state out of the context', async (t) => {
    const rules = parseDockerignore(existsSync(dockerignorePath) ? readFileSync(dockerignorePath, 'utf8') : '');
    for (const p of [
      'node_modules',
      'node_modules/tap/package.json',
      'dist',
      'dist/cli/main.js',
      'data',
      '.git',
      '.git/HEAD',
      'coverage',
      '.tap',
    ]) {
      t.ok(isIgnored(rules, p), `${p} is excluded`);
    }
  });
});
