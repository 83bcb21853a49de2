/**
 * --send-timeout and --max-connections-per-client: parsed like the other server flags (durations as in
 * src/config/duration.ts), each also from its environment variable; a bad value exits 2 with one line
 * naming the flag.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { connectionLimitsFromFlags } from '../../src/cli/connection-options.js';
import { ConfigError } from '../../src/config/upstreams.js';
import { runCli } from '../helpers/run-cli.js';

t.test('durations and counts are parsed; unset flags keep the server defaults', async (t) => {
  t.same(connectionLimitsFromFlags({}), { sendTimeoutMs: undefined, maxConnectionsPerClient: undefined });
  t.same(connectionLimitsFromFlags({ sendTimeout: '60s', maxConnectionsPerClient: '0' }), {
    sendTimeoutMs: 60_000,
    maxConnectionsPerClient: 0,
  });
  t.same(connectionLimitsFromFlags({ sendTimeout: '1m30s', maxConnectionsPerClient: ' 16 ' }), {
    sendTimeoutMs: 90_000,
    maxConnectionsPerClient: 16,
  });
  t.equal(connectionLimitsFromFlags({ sendTimeout: '0s' }).sendTimeoutMs, 0, '0s: never');
});

t.test('a bad value names the flag and what it expects', async (t) => {
  const bad: [Parameters<typeof connectionLimitsFromFlags>[0], RegExp][] = [
    [{ sendTimeout: 'soon' }, /^--send-timeout: expected a duration like 60s/],
    [{ sendTimeout: '60' }, /^--send-timeout: expected a duration/],
    [{ sendTimeout: '200ms' }, /^--send-timeout: at least 1s/],
    [{ maxConnectionsPerClient: '-1' }, /^--max-connections-per-client: expected a whole number/],
    [{ maxConnectionsPerClient: '2.5' }, /^--max-connections-per-client: expected a whole number/],
    [{ maxConnectionsPerClient: 'lots' }, /^--max-connections-per-client: expected a whole number/],
    [{ maxConnectionsPerClient: '99999999999' }, /^--max-connections-per-client: expected a whole number/],
  ];
  for (const [flags, message] of bad) {
    t.throws(() => connectionLimitsFromFlags(flags), ConfigError, JSON.stringify(flags));
    t.throws(() => connectionLimitsFromFlags(flags), { message }, JSON.stringify(flags));
  }
});

t.test('the CLI reads them from the environment and refuses bad ones before serving', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'oci-connection-flags-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const fromEnv = await runCli(['--listen', '127.0.0.1:0', 'filesystem', '--root', root], { env: { SEND_TIMEOUT: 'never' } });
  t.equal(fromEnv.code, 2, 'exit 2');
  t.match(fromEnv.stderr, /--send-timeout: expected a duration like 60s or 5m \(0s: never\), got "never"/);
  const fromFlag = await runCli(['--listen', '127.0.0.1:0', '--max-connections-per-client', 'x', 'filesystem', '--root', root]);
  t.equal(fromFlag.code, 2, 'exit 2');
  t.match(fromFlag.stderr, /--max-connections-per-client: expected a whole number \(0: no cap\), got "x"/);
  t.equal(fromFlag.stdout, '', 'nothing served');
});
