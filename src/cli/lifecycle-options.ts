import { Option, type Command } from 'commander';
import { parseDuration } from '../config/duration.js';
import { ConfigError } from '../config/upstreams.js';
import { parseCacheSize, parsePercent } from '../lifecycle/collector/cache-size.js';
import { isValidReplicaId } from '../lifecycle/collector/replica-id.js';
import type { LifecycleSettings } from '../server/create-server.js';

/** Server flags of the cache lifecycle (bounded size, expiry, offline), each also an environment variable. */
export function addLifecycleOptions(program: Command): void {
  program
    .addOption(
      new Option('--offline', 'never contact upstreams: serve only what the cache holds, 404 for the rest').env('OFFLINE').default(false),
    )
    .addOption(
      new Option(
        '--max-cache-size <size>',
        'bound the cached blobs: 50GiB, 500MiB, or (filesystem) 80% of its filesystem; least recently used are evicted',
      ).env('MAX_CACHE_SIZE'),
    )
    .addOption(
      new Option('--cache-low-water <percent>', 'when over --max-cache-size, evict down to this share of it')
        .env('CACHE_LOW_WATER')
        .default('90%'),
    )
    .addOption(
      new Option('--cache-expiry <duration>', 'delete tag records and blobs not used for this long, e.g. 30d; unset: never').env(
        'CACHE_EXPIRY',
      ),
    )
    .addOption(new Option('--gc-interval <duration>', 'how often eviction and expiry run').env('GC_INTERVAL').default('5m'))
    .addOption(
      new Option('--gc-grace <duration>', 'never evict or expire what was used more recently than this').env('GC_GRACE').default('10m'),
    )
    .addOption(
      new Option(
        '--replica-id <id>',
        "names this replica's access-time object; unique among replicas sharing a cache (default: <hostname>-<pid>)",
      ).env('REPLICA_ID'),
    );
}

export interface LifecycleFlags {
  offline?: boolean | undefined;
  maxCacheSize?: string | undefined;
  cacheLowWater?: string | undefined;
  cacheExpiry?: string | undefined;
  gcInterval?: string | undefined;
  gcGrace?: string | undefined;
  replicaId?: string | undefined;
}

export interface LifecycleServerOptions {
  offline: boolean;
  replicaId: string | undefined;
  lifecycle: LifecycleSettings;
}

/** Checks the flags; throws ConfigError naming the flag that is wrong. */
export function lifecycleFromFlags(flags: LifecycleFlags, storageKind: 'filesystem' | 's3'): LifecycleServerOptions {
  const lifecycle: LifecycleSettings = {};
  if (flags.maxCacheSize !== undefined) {
    const size = parseCacheSize(flags.maxCacheSize);
    if (!size)
      throw new ConfigError(`--max-cache-size: expected a size like 50GiB, 500MiB or 80%, got ${JSON.stringify(flags.maxCacheSize)}`);
    if (size.kind === 'percent' && storageKind !== 'filesystem') {
      throw new ConfigError("--max-cache-size: a percentage is a share of the cache's filesystem; with s3 give a size like 500GiB");
    }
    lifecycle.maxCacheSize = size;
  }
  if (flags.cacheLowWater !== undefined) {
    const percent = parsePercent(flags.cacheLowWater);
    if (percent === undefined)
      throw new ConfigError(`--cache-low-water: expected a percentage from 1 to 100 like 90%, got ${JSON.stringify(flags.cacheLowWater)}`);
    lifecycle.lowWaterPercent = percent;
  }
  lifecycle.expiryMs = duration('--cache-expiry', flags.cacheExpiry);
  lifecycle.gcIntervalMs = duration('--gc-interval', flags.gcInterval);
  if (lifecycle.gcIntervalMs !== undefined && lifecycle.gcIntervalMs < 1000) throw new ConfigError('--gc-interval: at least 1s');
  lifecycle.graceMs = duration('--gc-grace', flags.gcGrace);
  if (lifecycle.expiryMs !== undefined && lifecycle.expiryMs <= 0) throw new ConfigError('--cache-expiry: must be more than 0');
  if (flags.replicaId !== undefined && !isValidReplicaId(flags.replicaId)) {
    throw new ConfigError(`--replica-id: expected up to 100 of a-z 0-9 . _ -, got ${JSON.stringify(flags.replicaId.slice(0, 120))}`);
  }
  return { offline: flags.offline === true, replicaId: flags.replicaId, lifecycle };
}

function duration(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const ms = parseDuration(text);
  if (ms === undefined) throw new ConfigError(`${flag}: expected a duration like 30s, 5m or 30d, got ${JSON.stringify(text)}`);
  return ms;
}
