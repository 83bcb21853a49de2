/**
 * The server command (`node dist/cli/main.js ... filesystem --root DIR`) refusing bad configuration: one
 * line on stderr, exit status 2, and nothing of a secret in what it prints.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { runCli } from '../helpers/run-cli.js';

const PASSWORD = 'Zq9-Wk7pX2-vR';

t.test('a malformed UPSTREAM_CREDENTIALS stops the server without printing any part of the password', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'oci-serve-test-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  // The quotes lost on the way through a shell: the password is bare in the JSON.
  const result = await runCli(['--listen', '127.0.0.1:0', 'filesystem', '--root', root], {
    env: { UPSTREAM_CREDENTIALS: `{"docker.io":{"username":"robot","password":${PASSWORD}}}` },
    timeoutMs: 60_000,
  });
  t.equal(result.code, 2, 'exit status 2, a configuration error');
  t.match(result.stderr, /^oci-registry: UPSTREAM_CREDENTIALS: invalid JSON/);
  const printed = result.stdout + result.stderr;
  for (let i = 0; i + 4 <= PASSWORD.length; i++) {
    t.notOk(printed.includes(PASSWORD.slice(i, i + 4)), `no "${PASSWORD.slice(i, i + 4)}" in the output`);
  }
});
