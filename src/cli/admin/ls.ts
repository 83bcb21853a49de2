import { takeInventory, type Inventory } from '../../lifecycle/collector/inventory.js';
import type { AdminCommandRegistrar } from './index.js';
import { adminLogger, formatBytes, openAdminStorage, shortDigest } from './runtime.js';

interface LsFlags {
  namespace?: string;
  json?: boolean;
}

/**
 * `oci-registry [global flags] filesystem --root DIR ls [--namespace NS] [--json]`
 *
 * Lists the cached repositories and tags: digest, size (the manifest plus the referenced blobs that are
 * cached), last access (any replica) and when upstream last confirmed the tag. Reads only: safe while
 * a server runs on the same cache.
 */
export const registerLs: AdminCommandRegistrar = (storageCommand, context) => {
  storageCommand
    .command('ls')
    .description('list cached repositories, tags, digests, sizes and last access (reads only)')
    .option('--namespace <ns>', 'only this namespace (e.g. docker.io)')
    .option('--json', 'one JSON document instead of a table')
    .action(async (flags: LsFlags) => {
      const ctx = context();
      const storage = await openAdminStorage(ctx, adminLogger(ctx), { existing: { command: 'ls' } });
      try {
        const inventory = await takeInventory(storage, { namespace: flags.namespace });
        process.stdout.write(flags.json ? `${JSON.stringify(inventory, null, 2)}\n` : renderTable(inventory));
      } finally {
        await storage.close();
      }
    });
};

function renderTable(inv: Inventory): string {
  const rows: string[][] = [['REPOSITORY', 'TAG', 'DIGEST', 'SIZE', 'BLOBS', 'LAST ACCESS', 'CHECKED']];
  for (const repo of inv.repositories) {
    for (const t of repo.tags) {
      rows.push([
        `${repo.namespace}/${repo.repository}`,
        t.tag,
        shortDigest(t.digest),
        formatBytes(t.size),
        t.missingBlobs > 0 ? `${t.blobs.length} (+${t.missingBlobs} not cached)` : String(t.blobs.length),
        t.lastAccess ? shortTime(t.lastAccess) : '-',
        shortTime(t.checkedAt),
      ]);
    }
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  const lines = rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  '));
  const t = inv.totals;
  lines.push(
    '',
    `${t.repositories} repositor${t.repositories === 1 ? 'y' : 'ies'}, ${t.tags} tag${t.tags === 1 ? '' : 's'}; ` +
      `the cache holds ${t.blobs} blob${t.blobs === 1 ? '' : 's'} (${formatBytes(t.blobBytes)}) and ${t.manifests} manifest${t.manifests === 1 ? '' : 's'} (${formatBytes(t.manifestBytes)})`,
  );
  return `${lines.join('\n')}\n`;
}

/** `2024-05-06 07:08:09Z` */
function shortTime(iso: string): string {
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)}Z`;
}
