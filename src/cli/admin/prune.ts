import { Option } from 'commander';
import { parseDuration } from '../../config/duration.js';
import { ConfigError } from '../../config/upstreams.js';
import { readAccessTimes } from '../../lifecycle/collector/access-state.js';
import { expire, type ExpiredItem } from '../../lifecycle/collector/expiry.js';
import type { AdminCommandRegistrar } from './index.js';
import { adminLogger, formatBytes, openAdminStorage } from './runtime.js';

interface PruneFlags {
  olderThan: string;
  dryRun?: boolean;
  grace: string;
}

/**
 * `oci-registry [global flags] filesystem --root DIR prune --older-than 30d [--dry-run]`
 *
 * Deletes what has not been used for that long, by the expiry rule of src/lifecycle/collector/expiry.ts (the
 * one the server's --cache-expiry applies): tag records neither confirmed upstream nor served, tag
 * records whose manifest is gone, manifests no kept tag reaches and nobody fetched, blobs nobody
 * fetched. Last use comes from every replica's access times. Safe while servers run on the same
 * cache: each deletion is one atomic storage operation, nothing used within --grace is touched, and
 * whatever a client still wants is fetched again from upstream.
 */
export const registerPrune: AdminCommandRegistrar = (storageCommand, context) => {
  storageCommand
    .command('prune')
    .description('delete tag records, manifests and blobs not used for a while (prints each; --dry-run deletes nothing)')
    .addOption(new Option('--older-than <duration>', 'what was last used longer ago than this, e.g. 30d').makeOptionMandatory())
    .option('--dry-run', 'print what would be deleted, delete nothing')
    .addOption(new Option('--grace <duration>', 'never delete what was used more recently than this').default('10m'))
    .action(async (flags: PruneFlags) => {
      const olderThan = parseDuration(flags.olderThan);
      if (olderThan === undefined)
        throw new ConfigError(`prune --older-than: expected a duration like 30d, got ${JSON.stringify(flags.olderThan)}`);
      const graceMs = parseDuration(flags.grace);
      if (graceMs === undefined) throw new ConfigError(`prune --grace: expected a duration like 10m, got ${JSON.stringify(flags.grace)}`);
      const dryRun = flags.dryRun === true;
      const ctx = context();
      const storage = await openAdminStorage(ctx, adminLogger(ctx), { existing: { command: 'prune' } });
      const out = process.stdout;
      const verb = dryRun ? 'would delete' : 'deleted';
      try {
        const access = await readAccessTimes(storage);
        const now = Date.now();
        const report = await expire({
          storage,
          cutoff: now - olderThan,
          guard: { now: () => now, graceMs },
          lastAccess: (d) => access.times.get(d),
          manifests: true,
          dryRun,
          onItem: (item) => out.write(`${verb} ${describe(item)}\n`),
        });
        const total = report.blobBytes + report.manifestBytes;
        out.write(
          `${dryRun ? 'would prune' : 'pruned'} ${count(report.tags, 'tag')}, ${count(report.manifests, 'manifest')}, ` +
            `${count(report.blobs, 'blob')} (${formatBytes(total)})${dryRun ? '; dry run: nothing was deleted' : ''}\n`,
        );
      } finally {
        await storage.close();
      }
    });
};

function describe(item: ExpiredItem): string {
  const used = `last used ${new Date(item.lastUse).toISOString()}`;
  switch (item.kind) {
    case 'tag':
      return `tag ${item.namespace}/${item.repository}:${item.tag} -> ${item.digest} (${item.reason === 'manifest missing' ? 'its manifest is not cached' : used})`;
    case 'manifest':
      return `manifest ${item.digest} ${formatBytes(item.size)} (${used})`;
    case 'blob':
      return `blob ${item.digest} ${formatBytes(item.size)} (${used})`;
  }
}

function count(n: number, what: string): string {
  return `${n} ${what}${n === 1 ? '' : 's'}`;
}
