import { parseDuration } from '../config/duration.js';
import type { ClusterSettings } from '../cluster/cluster.js';
import type { MirrorConfig } from '../config/types.js';
import { ConfigError } from '../config/upstreams.js';
import type { DownloadLimits } from '../proxy/download-limits.js';
import type { StorageOptions } from '../storage/create-storage.js';
import type { GlobalOptions } from './global-options.js';
import { clusterFromFlags } from './cluster-options.js';
import { connectionLimitsFromFlags, type ConnectionServerOptions } from './connection-options.js';
import { downloadLimitsFromFlags } from './download-options.js';
import { lifecycleFromFlags, type LifecycleServerOptions } from './lifecycle-options.js';
import { parseListenAddress, type ListenAddress } from './listen-address.js';
import { loadConfig } from './load-config.js';

export interface ServerCommandOptions extends GlobalOptions {
  storage: StorageOptions;
}

/** Everything the server checks before it opens storage or listens. */
export interface ServerSettings {
  listen: ListenAddress;
  graceMs: number;
  metricsListen: ListenAddress | undefined;
  lifecycle: LifecycleServerOptions;
  downloads: Partial<DownloadLimits>;
  connectionLimits: ConnectionServerOptions;
  config: MirrorConfig;
  /** `--peers` and friends; undefined when this replica works alone. */
  cluster: ClusterSettings | undefined;
}

/**
 * Checks the flags and loads the upstream config; throws ConfigError naming what is wrong. The server
 * and the `config` command both call this, so `config` accepts exactly what the server accepts.
 */
export function serverSettings(opts: ServerCommandOptions): ServerSettings {
  const listen = parseListenAddress(opts.listen);
  if (!listen) throw new ConfigError(`--listen: expected HOST:PORT, got ${JSON.stringify(opts.listen)}`);
  const graceMs = parseDuration(opts.shutdownGracePeriod);
  if (graceMs === undefined)
    throw new ConfigError(`--shutdown-grace-period: expected a duration like 30s, got ${JSON.stringify(opts.shutdownGracePeriod)}`);
  const metricsListen = opts.metricsListen === undefined ? undefined : parseListenAddress(opts.metricsListen);
  if (opts.metricsListen !== undefined && !metricsListen) {
    throw new ConfigError(`--metrics-listen: expected HOST:PORT, got ${JSON.stringify(opts.metricsListen)}`);
  }
  const lifecycle = lifecycleFromFlags(opts, opts.storage.kind);
  const downloads = downloadLimitsFromFlags(opts);
  const connectionLimits = connectionLimitsFromFlags(opts);
  const cluster = clusterFromFlags(opts, listen);
  if (cluster?.peerCacheCopies && opts.storage.kind !== 'filesystem') {
    throw new ConfigError('--peer-cache-copies: only for filesystem storage (in S3 every replica reads the one bucket)');
  }
  const config = loadConfig(opts);
  return { listen, graceMs, metricsListen, lifecycle, downloads, connectionLimits, config, cluster };
}
