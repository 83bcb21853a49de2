import { rm, stat } from 'node:fs/promises';
import { ConfigError } from '../../config/upstreams.js';
import type { Logger } from 'pino';
import { createLogger } from '../../log.js';
import { Mirror } from '../../proxy/mirror.js';
import { Resolver } from '../../resolve/resolver.js';
import { createSpoolDir } from '../../server/spool-dir.js';
import { createStorage } from '../../storage/create-storage.js';
import type { Storage } from '../../storage/storage.js';
import { UpstreamPool } from '../../upstream/upstream-pool.js';
import { loadConfig } from '../load-config.js';
import { downloadLimitsFromFlags } from '../download-options.js';
import type { AdminContext } from './index.js';

/** Admin commands log (pino JSON) to stderr: stdout carries their report. */
export function adminLogger(context: AdminContext): Logger {
  return createLogger(context.global.logLevel, process.stderr);
}

export interface AdminStorageOptions {
  /**
   * Commands that only read or delete (ls, prune, export) refuse a filesystem root that does not exist
   * rather than create an empty cache there: a mistyped --root would otherwise look like an empty cache.
   */
  existing?: { command: string };
}

/**
 * The storage of an admin command. A server may be running on the same cache, so it is opened shared:
 * a filesystem cache gets its directories created but tmp/, where a running server writes, is left alone.
 */
export async function openAdminStorage(context: AdminContext, log: Logger, options: AdminStorageOptions = {}): Promise<Storage> {
  if (options.existing && context.storage.kind === 'filesystem') {
    const root = context.storage.root;
    const isDir = await stat(root).then(
      (s) => s.isDirectory(),
      () => false,
    );
    if (!isDir)
      throw new ConfigError(
        `filesystem --root: ${JSON.stringify(root)} is not an existing directory (${options.existing.command} works on an existing cache)`,
      );
  }
  const storage = await createStorage(context.storage, log);
  await storage.init({ shared: true });
  return storage;
}

export interface AdminMirror {
  mirror: Mirror;
  resolver: Resolver;
  storage: Storage;
  close(): Promise<void>;
}

/** The cache policy of a server (same config, storage and upstream clients), without the HTTP server. */
export async function openAdminMirror(context: AdminContext, log: Logger): Promise<AdminMirror> {
  const config = loadConfig(context.global);
  const downloads = downloadLimitsFromFlags(context.global);
  const storage = await openAdminStorage(context, log);
  const spoolDir = await createSpoolDir(context.global.spoolDir);
  const upstreams = new UpstreamPool();
  const mirror = new Mirror({ storage, upstreams, log, spoolDir, downloads });
  return {
    mirror,
    resolver: new Resolver(config),
    storage,
    close: async () => {
      await mirror.drain();
      await upstreams.close();
      await storage.close();
      await rm(spoolDir, { recursive: true, force: true }).catch(() => undefined);
    },
  };
}

export { formatBytes } from '../../format-bytes.js';

export function formatMs(ms: number): string {
  return ms < 1000 ? `${ms}ms` : `${(ms / 1000).toFixed(1)}s`;
}

export function shortDigest(digest: string | undefined): string {
  if (!digest) return '-';
  const i = digest.indexOf(':');
  return `${digest.slice(0, i + 1)}${digest.slice(i + 1, i + 13)}`;
}
