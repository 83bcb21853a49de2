/**
 * Mistakes a new user makes on the command line, run as the built CLI: each ends with exit status 2
 * and one line on stderr per problem (`oci-registry: ...`), no help dump and no stack trace.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { runCli } from '../helpers/run-cli.js';

async function tempDir(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'oci-cli-errors-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function oneLineExit2(t: Test, args: string[], message: RegExp): Promise<void> {
  const r = await runCli(args, { timeoutMs: 60_000 });
  t.equal(r.code, 2, `${args.join(' ')}: exit 2`);
  t.equal(r.stdout, '', 'nothing on stdout');
  const lines = r.stderr.trimEnd().split('\n');
  t.equal(lines.length, 1, `one line: ${r.stderr}`);
  t.match(lines[0], message);
}

t.test('an unknown option exits 2 with one line', async (t) => {
  await oneLineExit2(
    t,
    ['--no-such-flag', 'filesystem', '--root', '/tmp/x'],
    /^oci-registry: unknown option '--no-such-flag' \(run with --help for usage\)$/,
  );
});

t.test('a misspelled option names the right one on the same line', async (t) => {
  await oneLineExit2(t, ['--lisen', '127.0.0.1:0', 'filesystem', '--root', '/tmp/x'], /unknown option '--lisen'.*Did you mean --listen\?/);
});

t.test('an option missing its value exits 2 with one line', async (t) => {
  await oneLineExit2(t, ['--listen'], /^oci-registry: option '--listen <host:port>' argument missing/);
});

t.test('a bad option value exits 2 with one line', async (t) => {
  await oneLineExit2(
    t,
    ['--log-level', 'loud', 'filesystem', '--root', '/tmp/x'],
    /^oci-registry: option '--log-level <level>' argument 'loud' is invalid/,
  );
  await oneLineExit2(t, ['--listen', 'nonsense', 'filesystem', '--root', '/tmp/x'], /expected HOST:PORT/);
});

t.test('a missing mandatory storage flag exits 2 with one line', async (t) => {
  await oneLineExit2(t, ['s3'], /^oci-registry: required option '--bucket <name>' not specified/);
});

t.test('without a storage subcommand the CLI says so in one line', async (t) => {
  await oneLineExit2(
    t,
    ['--listen', '0.0.0.0:8080'],
    /^oci-registry: name a storage subcommand: .*filesystem --root DIR, or s3 --bucket NAME/,
  );
  await oneLineExit2(t, [], /name a storage subcommand/);
});

t.test('an unknown subcommand is named in one line', async (t) => {
  await oneLineExit2(
    t,
    ['filesytem', '--root', '/tmp/x'],
    /^oci-registry: unknown command 'filesytem' \(Did you mean filesystem\?\) \(run with --help for usage\)$/,
  );
});

t.test('--help and --version still exit 0', async (t) => {
  const help = await runCli(['--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /Usage: oci-registry/);
  const version = await runCli(['--version']);
  t.equal(version.code, 0);
  t.match(version.stdout, /^\d+\.\d+\.\d+/);
});

for (const command of [['ls'], ['prune', '--older-than', '30d']]) {
  t.test(`${command[0]} on a filesystem root that does not exist exits 2 and creates nothing`, async (t) => {
    const dir = await tempDir(t);
    const root = join(dir, 'no-such-cache');
    await oneLineExit2(
      t,
      ['filesystem', '--root', root, ...command],
      new RegExp(
        `^oci-registry: filesystem --root: ".*no-such-cache" is not an existing directory \\(${command[0]} works on an existing cache\\)$`,
      ),
    );
    t.notOk(existsSync(root), 'the root was not created');
  });
}

t.test('every problem of an upstream config file is reported at once, one per line, exit 2', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'upstreams.yaml');
  await writeFile(
    file,
    [
      '- namespace: docker.io',
      '  host: registry-1.docker.io',
      '  tls: maybe',
      '  read_timeout: soon',
      '- namespace: ghcr.io',
      '  hots: ghcr.io',
      '- namespace: docker.io',
      '  host: mirror.gcr.io',
    ].join('\n'),
  );
  const r = await runCli(['--listen', '127.0.0.1:0', '--upstream-config-file', file, 'filesystem', '--root', dir], { timeoutMs: 60_000 });
  t.equal(r.code, 2);
  t.same(r.stderr.trimEnd().split('\n'), [
    `oci-registry: ${file}: entry 0 (namespace docker.io): key "tls" must be true or false, got "maybe"`,
    `oci-registry: ${file}: entry 0 (namespace docker.io): key "read_timeout" must be a duration like 0s, 90m, 12h or 14d, got "soon"`,
    `oci-registry: ${file}: entry 1 (namespace ghcr.io): unknown key "hots"`,
    `oci-registry: ${file}: entry 1 (namespace ghcr.io): key "host" is required (a string)`,
  ]);
});
