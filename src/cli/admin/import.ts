import { Option } from 'commander';
import { importArchive } from '../../lifecycle/archives/import-archive.js';
import { createSpoolDir } from '../../server/spool-dir.js';
import { rm } from 'node:fs/promises';
import type { AdminCommandRegistrar } from './index.js';
import { adminLogger, formatBytes, openAdminStorage } from './runtime.js';

interface ImportFlags {
  as?: string | undefined;
}

/**
 * `oci-registry [global flags] filesystem --root DIR import FILE.tar [--as [NAMESPACE/]REPOSITORY[:TAG]]`
 *
 * Loads a `docker save` / `skopeo copy ... docker-archive:` or an OCI-layout (`oci-archive:`, `export`)
 * tarball into the cache, verifying every digest; its tags are registered as freshly checked, so a mirror
 * (even `--offline`, or with the upstream unreachable) serves them. No upstream is contacted.
 */
export const registerImport: AdminCommandRegistrar = (storageCommand, context) => {
  storageCommand
    .command('import')
    .description('load a docker-archive or OCI-archive tarball into the cache (air-gapped sites), verifying every digest')
    .argument('<file>', 'the tarball (docker save, skopeo copy ... docker-archive: or oci-archive:, or export; may be gzip-compressed)')
    .addOption(new Option('--as <reference>', 'register the image under [NAMESPACE/]REPOSITORY[:TAG] instead of the names in the archive'))
    .action(async (file: string, flags: ImportFlags) => {
      const ctx = context();
      const log = adminLogger(ctx);
      const storage = await openAdminStorage(ctx, log);
      const spoolDir = await createSpoolDir(ctx.global.spoolDir);
      try {
        const report = await importArchive(file, { storage, as: flags.as, spoolDir, log });
        const out = process.stdout;
        for (const img of report.images) {
          const names = img.names.length > 0 ? img.names.join(', ') : '(untagged: pull by digest)';
          out.write(
            `imported ${names}  ${img.digest}  ${img.manifests} manifest${img.manifests === 1 ? '' : 's'}, ${img.blobs} blobs, ${formatBytes(img.bytes)}\n`,
          );
        }
        for (const w of report.warnings) out.write(`warning: ${w}\n`);
        if (report.format === 'docker-archive') {
          out.write(
            'note: a docker-archive holds no registry manifest; the manifest was rebuilt from its config and layers as stored,\n' +
              "      so its digest differs from the registry's whenever the archive lost the compressed layers (config digest and diff_ids are the original ones)\n",
          );
        }
        out.write(
          `${report.format}: ${report.images.length} image${report.images.length === 1 ? '' : 's'}, ${report.storedBlobs} blob${report.storedBlobs === 1 ? '' : 's'} stored, ${report.reusedBlobs} already cached\n`,
        );
      } finally {
        await storage.close();
        await rm(spoolDir, { recursive: true, force: true }).catch(() => undefined);
      }
    });
};
