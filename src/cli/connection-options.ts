import { Option, type Command } from 'commander';
import { parseDuration } from '../config/duration.js';
import { ConfigError } from '../config/upstreams.js';

/** Server flags that bound what one client holds (a stalled response, concurrent responses), each also an environment variable. */
export function addConnectionOptions(program: Command): void {
  program
    .addOption(
      new Option(
        '--send-timeout <duration>',
        'close a response whose client takes no bytes for this long (a slow but reading client is kept); 0s: never',
      )
        .env('SEND_TIMEOUT')
        .default('60s'),
    )
    .addOption(
      new Option(
        '--max-connections-per-client <n>',
        'registry API responses in progress per client address; more get 429 with Retry-After; 0: no cap',
      )
        .env('MAX_CONNECTIONS_PER_CLIENT')
        .default('0'),
    );
}

export interface ConnectionFlags {
  sendTimeout?: string | undefined;
  maxConnectionsPerClient?: string | undefined;
}

export interface ConnectionServerOptions {
  sendTimeoutMs: number | undefined;
  maxConnectionsPerClient: number | undefined;
}

/** Checks the flags; throws ConfigError naming the flag that is wrong. */
export function connectionLimitsFromFlags(flags: ConnectionFlags): ConnectionServerOptions {
  let sendTimeoutMs: number | undefined;
  if (flags.sendTimeout !== undefined) {
    sendTimeoutMs = parseDuration(flags.sendTimeout);
    if (sendTimeoutMs === undefined)
      throw new ConfigError(`--send-timeout: expected a duration like 60s or 5m (0s: never), got ${JSON.stringify(flags.sendTimeout)}`);
    if (sendTimeoutMs > 0 && sendTimeoutMs < 1000)
      throw new ConfigError(`--send-timeout: at least 1s (or 0s: never), got ${JSON.stringify(flags.sendTimeout)}`);
  }
  let maxConnectionsPerClient: number | undefined;
  if (flags.maxConnectionsPerClient !== undefined) {
    const text = flags.maxConnectionsPerClient.trim();
    maxConnectionsPerClient = /^\d{1,9}$/.test(text) ? Number(text) : NaN;
    if (!Number.isSafeInteger(maxConnectionsPerClient)) {
      throw new ConfigError(
        `--max-connections-per-client: expected a whole number (0: no cap), got ${JSON.stringify(flags.maxConnectionsPerClient)}`,
      );
    }
  }
  return { sendTimeoutMs, maxConnectionsPerClient };
}
