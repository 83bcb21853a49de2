import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import t from 'tap';
import { addDownloadOptions, downloadLimitsFromFlags, type DownloadFlags } from '../../src/cli/download-options.js';
import { randomBytesSeeded } from '../fixtures/content.js';
import { startFixtureUpstream } from '../fixtures/upstream.js';
import { startMirrorProcess } from '../helpers/mirror-process.js';
import { runCli } from '../helpers/run-cli.js';

function parse(argv: string[], env: Record<string, string> = {}): DownloadFlags {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    const program = new Command().exitOverride();
    addDownloadOptions(program);
    program.parse(argv, { from: 'user' });
    return program.opts<DownloadFlags>();
  } finally {
    for (const k of Object.keys(env)) delete process.env[k];
    Object.assign(process.env, saved);
  }
}

t.test('defaults: 64 GiB per blob, 8 GiB of spool', async (t) => {
  t.same(downloadLimitsFromFlags(parse([])), { maxBlobSize: 64 * 1024 ** 3, maxSpoolSize: 8 * 1024 ** 3 });
});

t.test('sizes are read like --max-cache-size (binary and decimal units), from flags or the environment', async (t) => {
  t.same(downloadLimitsFromFlags(parse(['--max-blob-size', '500MiB', '--max-spool-size', '2GB'])), {
    maxBlobSize: 500 * 1024 ** 2,
    maxSpoolSize: 2e9,
  });
  t.same(downloadLimitsFromFlags(parse([], { MAX_BLOB_SIZE: '1TiB', MAX_SPOOL_SIZE: '1048576' })), {
    maxBlobSize: 1024 ** 4,
    maxSpoolSize: 1048576,
  });
});

t.test('a bad size names the flag; a percentage or zero is refused', async (t) => {
  for (const [flags, name] of [
    [{ maxBlobSize: 'lots' }, '--max-blob-size'],
    [{ maxBlobSize: '0' }, '--max-blob-size'],
    [{ maxSpoolSize: '50%' }, '--max-spool-size'],
  ] as const) {
    t.throws(
      () => downloadLimitsFromFlags(flags),
      { name: 'ConfigError', message: new RegExp(`^${name}: expected a size like 64GiB`) },
      JSON.stringify(flags),
    );
  }
});

t.test('the server exits 2 naming the flag when MAX_BLOB_SIZE is not a size', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'download-options-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const r = await runCli(['filesystem', '--root', root], { env: { MAX_BLOB_SIZE: 'huge' } });
  t.equal(r.code, 2);
  t.match(r.stderr, /--max-blob-size: expected a size like 64GiB/);
});

t.test('MAX_BLOB_SIZE reaches the server: a blob announcing more gets 502', async (t) => {
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  const small = up.addBlob(randomBytesSeeded(512 * 1024, 1));
  const big = up.addBlob(randomBytesSeeded(2 * 1024 * 1024, 2));
  const root = await mkdtemp(join(tmpdir(), 'download-options-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const mirror = await startMirrorProcess({
    root,
    configYaml: `- namespace: ${up.host}\n  host: ${up.host}\n  tls: false\n`,
    env: { MAX_BLOB_SIZE: '1MiB' },
  });
  t.teardown(() => mirror.stop());
  const ok = await fetch(`${mirror.url}/v2/x/app/blobs/${small}?ns=${up.host}`);
  t.equal(ok.status, 200);
  await ok.arrayBuffer();
  const refused = await fetch(`${mirror.url}/v2/x/app/blobs/${big}?ns=${up.host}`);
  t.equal(refused.status, 502);
  t.match(await refused.json(), { errors: [{ code: 'UPSTREAM_ERROR' }] });
});
