import { InvalidArgumentError, Option } from 'commander';
import { ConfigError } from '../../config/upstreams.js';
import { parsePlatformList, type Platform } from '../../lifecycle/manifest-refs.js';
import { prefetchImages, readImageList, type PrefetchProgress, type PrefetchResult } from '../../lifecycle/prefetch/prefetch.js';
import { summarize } from '../../lifecycle/prefetch/prefetch-summary.js';
import type { AdminCommandRegistrar } from './index.js';
import { adminLogger, formatBytes, formatMs, openAdminMirror, shortDigest } from './runtime.js';
import { errorText } from '../../error-text.js';

interface PrefetchFlags {
  platform?: Platform[] | undefined;
  file?: string | undefined;
  concurrency: number;
}

/**
 * `oci-registry [global flags] filesystem --root DIR prefetch [--platform linux/amd64,linux/arm64] [--file list.txt] IMAGE...`
 *
 * Pulls whole images into the cache through the mirror's own cache policy (same config, same upstream
 * clients, same verification), so that a mirror started on that cache serves them even with no upstream.
 * One line per image on stdout (a progress bar while it runs, on a terminal) and a summary; exit status 1
 * when any image failed.
 */
export const registerPrefetch: AdminCommandRegistrar = (storageCommand, context) => {
  storageCommand
    .command('prefetch')
    .description('pull images (every platform, or --platform) into the cache, the way a client pull through the mirror would')
    .argument(
      '[images...]',
      'image references: nginx:1.27, docker.io/library/nginx@sha256:..., ghcr.io/org/app:tag, 127.0.0.1:5000/team/app:v1',
    )
    .addOption(
      new Option('--platform <list>', 'only these platforms of multi-platform images, comma-separated: linux/amd64,linux/arm64').argParser(
        platformArg,
      ),
    )
    .addOption(new Option('--file <file>', 'also read image references from this file: one per line, # comments'))
    .addOption(new Option('--concurrency <n>', 'blobs downloaded at once per image').default(4).argParser(positiveInt))
    .action(async (images: string[], flags: PrefetchFlags) => {
      const all = [...images, ...(flags.file ? await readImageList(flags.file) : [])];
      if (all.length === 0) throw new ConfigError('prefetch: name at least one image (arguments or --file)');
      const ctx = context();
      const log = adminLogger(ctx);
      const admin = await openAdminMirror(ctx, log);
      const out = process.stdout;
      const bar = out.isTTY ? new ProgressBar(out) : undefined;
      let results: PrefetchResult[];
      try {
        results = await prefetchImages(
          all,
          { mirror: admin.mirror, resolver: admin.resolver, log },
          { platforms: flags.platform, concurrency: flags.concurrency, onProgress: bar ? (p) => bar.update(p) : undefined },
          (r) => {
            bar?.clear();
            out.write(`${resultLine(r)}\n`);
          },
        );
      } finally {
        bar?.clear();
        await admin.close();
      }
      const s = summarize(results);
      out.write(
        `prefetched ${s.ok} of ${s.images} image${s.images === 1 ? '' : 's'}: ${formatBytes(s.bytes)} in the cache, ${formatBytes(s.fetchedBytes)} downloaded now` +
          (s.failed > 0 ? `; ${s.failed} failed` : '') +
          '\n',
      );
      if (s.failed > 0) process.exitCode = 1;
    });
};

function resultLine(r: PrefetchResult): string {
  if (!r.ok) return `FAILED  ${r.reference}: ${r.error ?? 'unknown error'}`;
  const platforms = r.platforms.length > 0 ? `  [${r.platforms.join(', ')}]` : '';
  const fetched = r.fetchedBlobs > 0 ? `downloaded ${r.fetchedBlobs} (${formatBytes(r.fetchedBytes)})` : 'all cached already';
  return `ok      ${r.reference}  ${shortDigest(r.digest)}${platforms}  ${r.manifests} manifest${r.manifests === 1 ? '' : 's'}, ${r.blobs} blob${r.blobs === 1 ? '' : 's'}, ${formatBytes(r.bytes)}; ${fetched}  ${formatMs(r.ms)}`;
}

/** One line redrawn with \r: `ref [#####.....] 12.0 MiB / 40.0 MiB  3/9 blobs`. No dependency, ~10 redraws a second. */
class ProgressBar {
  private last = 0;
  private shown = false;

  constructor(private readonly out: NodeJS.WriteStream) {}

  update(p: PrefetchProgress): void {
    const now = Date.now();
    const finished = p.total > 0 && p.done >= p.total;
    if (!finished && now - this.last < 100) return;
    this.last = now;
    const width = 24;
    const ratio = p.total > 0 ? Math.min(1, p.done / p.total) : 0;
    const filled = Math.round(ratio * width);
    const bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
    const tail = ` ${bar} ${formatBytes(p.done)} / ${p.total > 0 ? formatBytes(p.total) : '?'}  ${p.blobsDone}/${p.blobsTotal} blobs`;
    const columns = this.out.columns || 100;
    const room = Math.max(10, columns - tail.length - 1);
    const label = p.reference.length > room ? `...${p.reference.slice(-(room - 3))}` : p.reference;
    this.out.write(`\r${label}${tail}\x1b[K`);
    this.shown = true;
  }

  clear(): void {
    if (!this.shown) return;
    this.out.write('\r\x1b[K');
    this.shown = false;
  }
}

function platformArg(value: string): Platform[] {
  try {
    const list = parsePlatformList(value);
    if (list.length === 0) throw new Error('empty list');
    return list;
  } catch (e) {
    throw new InvalidArgumentError(errorText(e));
  }
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new InvalidArgumentError('expected an integer from 1 to 64');
  return n;
}
