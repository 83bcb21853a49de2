import type { LogLevel } from '../log.js';
import type { DownloadFlags } from './download-options.js';
import type { LifecycleFlags } from './lifecycle-options.js';
import type { ConnectionFlags } from './connection-options.js';
import type { ClusterFlags } from './cluster-options.js';

/** The program-level flags, as commander parses them (names follow the flags). */
export interface GlobalOptions extends LifecycleFlags, DownloadFlags, ConnectionFlags, ClusterFlags {
  listen: string;
  upstreamConfigFile?: string | undefined;
  defaultNamespace: string;
  logLevel: LogLevel;
  allowUnlistedNamespaces: boolean;
  checkCacheDigest: boolean;
  verifyCache: boolean;
  spoolDir?: string | undefined;
  shutdownGracePeriod: string;
  metricsListen?: string | undefined;
  /** False with --no-status-page. */
  statusPage: boolean;
  /** Image list prefetched in the background once the server listens. */
  preload?: string | undefined;
}
