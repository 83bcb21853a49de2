import { Option, type Command } from 'commander';
import { ConfigError } from '../config/upstreams.js';
import { parseCacheSize } from '../lifecycle/collector/cache-size.js';
import type { DownloadLimits } from '../proxy/download-limits.js';

/** Bounds of what an upstream can make the mirror download and spool, each also an environment variable. */
export function addDownloadOptions(program: Command): void {
  program
    .addOption(
      new Option('--max-blob-size <size>', 'refuse (502) a blob whose upstream announces more, cut a body running past it: 64GiB, 500MiB')
        .env('MAX_BLOB_SIZE')
        .default('64GiB'),
    )
    .addOption(
      new Option(
        '--max-spool-size <size>',
        'bytes that downloads in progress may hold on local disk; past it new uncached pulls stream without caching',
      )
        .env('MAX_SPOOL_SIZE')
        .default('8GiB'),
    );
}

export interface DownloadFlags {
  maxBlobSize?: string | undefined;
  maxSpoolSize?: string | undefined;
}

/** Checks the flags; throws ConfigError naming the flag that is wrong. */
export function downloadLimitsFromFlags(flags: DownloadFlags): Partial<DownloadLimits> {
  return {
    ...(flags.maxBlobSize === undefined ? {} : { maxBlobSize: bytes('--max-blob-size', flags.maxBlobSize) }),
    ...(flags.maxSpoolSize === undefined ? {} : { maxSpoolSize: bytes('--max-spool-size', flags.maxSpoolSize) }),
  };
}

function bytes(flag: string, text: string): number {
  const size = parseCacheSize(text);
  if (!size || size.kind !== 'bytes') throw new ConfigError(`${flag}: expected a size like 64GiB or 500MiB, got ${JSON.stringify(text)}`);
  return size.bytes;
}
