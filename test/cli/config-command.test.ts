/**
 * `oci-registry ... <storage> config`, run as the built CLI: the effective configuration as YAML, each
 * value's source in a comment, every secret redacted, exit 2 with the server's message when invalid.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import yaml from 'js-yaml';
import t, { type Test } from 'tap';
import { runCli } from '../helpers/run-cli.js';

async function tempDir(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'oci-config-cmd-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Extra environment of every run (an empty value would count as set, so nothing is cleared here). */
const CLEAN_ENV: Record<string, string> = {};

/** The line of `key:` inside the output (first one after `after`, when given). */
function lineOf(out: string, key: string, after?: string): string {
  const lines = out.split('\n');
  const start = after === undefined ? 0 : lines.findIndex((l) => l.includes(after));
  return lines.slice(Math.max(0, start)).find((l) => new RegExp(`^\\s*(- )?${key}:`).test(l)) ?? '';
}

t.test('no secret from flags, environment, the YAML file, UPSTREAM_CREDENTIALS or the htpasswd file appears in the output', async (t) => {
  const dir = await tempDir(t);
  const htpasswd = join(dir, 'htpasswd');
  await writeFile(htpasswd, 'alice:$2y$05$HTPASSWDHASHSECRETxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n');
  const file = join(dir, 'upstreams.yaml');
  await writeFile(
    file,
    [
      '- namespace: ghcr.io',
      '  host: ghcr.io',
      '  username: yaml-user',
      '  password: YAML-PASSWORD-7f3a',
      `  client_auth: ${htpasswd}`,
    ].join('\n'),
  );
  const r = await runCli(
    ['--upstream-config-file', file, 's3', '--bucket', 'b', '--access-key', 'AKIDPUBLIC', '--secret-key', 'FLAG-SECRET-KEY-91c2', 'config'],
    {
      env: {
        ...CLEAN_ENV,
        S3_HOST: 'https://minio-user:URL-PASSWORD-5d1e@minio.example:9000',
        UPSTREAM_CREDENTIALS: JSON.stringify({ 'quay.io': { username: 'cred-user', password: 'CRED-PASSWORD-c0de' } }),
      },
    },
  );
  t.equal(r.code, 0, r.stderr);
  const all = r.stdout + r.stderr;
  for (const secret of [
    'YAML-PASSWORD-7f3a',
    'FLAG-SECRET-KEY-91c2',
    'URL-PASSWORD-5d1e',
    'minio-user',
    'CRED-PASSWORD-c0de',
    'HTPASSWDHASHSECRET',
  ]) {
    t.notOk(all.includes(secret), `${secret} is not printed`);
  }
  const doc = yaml.load(r.stdout) as { storage: Record<string, unknown>; upstreams: Array<Record<string, unknown>> };
  t.equal(doc.storage['secret-key'], '<redacted>');
  t.equal(doc.storage['host'], 'https://<redacted>@minio.example:9000', 'the URL stays readable without its credentials');
  t.equal(doc.storage['access-key'], 'AKIDPUBLIC', 'the access key id is an identifier and shows');
  const ghcr = doc.upstreams.find((u) => u['namespace'] === 'ghcr.io');
  const quay = doc.upstreams.find((u) => u['namespace'] === 'quay.io');
  t.same([ghcr?.['username'], ghcr?.['password'], ghcr?.['client_auth']], ['yaml-user', '<redacted>', htpasswd]);
  t.same([quay?.['username'], quay?.['password']], ['cred-user', '<redacted>']);
});

t.test('each value names its source: flag, env, file, UPSTREAM_CREDENTIALS or default', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'upstreams.yaml');
  await writeFile(file, ['- namespace: docker.io', '  host: registry-1.docker.io', '  read_timeout: 30s'].join('\n'));
  const r = await runCli(['--listen', '127.0.0.1:5000', '--upstream-config-file', file, 'filesystem', '--root', dir, 'config'], {
    env: { ...CLEAN_ENV, LOG_LEVEL: 'debug', UPSTREAM_CREDENTIALS: JSON.stringify({ 'docker.io': { username: 'u', password: 'p' } }) },
  });
  t.equal(r.code, 0, r.stderr);
  t.match(lineOf(r.stdout, 'listen'), /^ {2}listen: 127\.0\.0\.1:5000 {2}# flag$/);
  t.match(lineOf(r.stdout, 'log-level'), /^ {2}log-level: debug {2}# env:LOG_LEVEL$/);
  t.match(lineOf(r.stdout, 'gc-interval'), /^ {2}gc-interval: 5m {2}# default$/);
  t.match(lineOf(r.stdout, 'root'), new RegExp(`root: ${dir.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} {2}# flag$`));
  t.match(
    lineOf(r.stdout, 'read_timeout', 'namespace: docker.io'),
    new RegExp(`read_timeout: 30s {2}# file:${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}$`),
  );
  t.match(lineOf(r.stdout, 'connect_timeout', 'namespace: docker.io'), /connect_timeout: 10s {2}# default$/);
  t.match(lineOf(r.stdout, 'username', 'namespace: docker.io'), /username: u {2}# UPSTREAM_CREDENTIALS$/);
  t.match(lineOf(r.stdout, 'password', 'namespace: docker.io'), /password: <redacted> {2}# UPSTREAM_CREDENTIALS$/);
});

t.test('an invalid configuration exits 2 with the one line the server prints, and nothing on stdout', async (t) => {
  const dir = await tempDir(t);
  const config = await runCli(['--cache-low-water', '150%', 'filesystem', '--root', dir, 'config'], { env: CLEAN_ENV });
  t.equal(config.code, 2);
  t.equal(config.stdout, '');
  t.same(config.stderr.trimEnd().split('\n'), [
    'oci-registry: --cache-low-water: expected a percentage from 1 to 100 like 90%, got "150%"',
  ]);
  const server = await runCli(['--listen', '127.0.0.1:0', '--cache-low-water', '150%', 'filesystem', '--root', dir], {
    env: CLEAN_ENV,
    timeoutMs: 60_000,
  });
  t.equal(server.code, 2);
  t.equal(server.stderr, config.stderr, 'the same message as the server');
});

t.test('invalid S3 options exit 2 without contacting S3 and without echoing URL credentials', async (t) => {
  const r = await runCli(['s3', '--bucket', 'b', '--host', 'ftp://u:FTP-PASSWORD-aa11@example.invalid', 'config'], { env: CLEAN_ENV });
  t.equal(r.code, 2);
  t.notOk(r.stderr.includes('FTP-PASSWORD-aa11'), 'the URL password is not echoed');
  t.same(r.stderr.trimEnd().split('\n'), ['oci-registry: s3: endpoint "ftp://<redacted>@example.invalid" must use http or https']);
});

t.test('malformed UPSTREAM_CREDENTIALS JSON exits 2 without quoting its text', async (t) => {
  const dir = await tempDir(t);
  const r = await runCli(['filesystem', '--root', dir, 'config'], {
    env: { ...CLEAN_ENV, UPSTREAM_CREDENTIALS: '{"docker.io":{"username":"u","password":Pw8yZ}}' },
  });
  t.equal(r.code, 2);
  t.notOk(r.stderr.includes('Pw8yZ'), 'the JSON text is not quoted');
  t.match(r.stderr, /^oci-registry: UPSTREAM_CREDENTIALS: invalid JSON/);
});
