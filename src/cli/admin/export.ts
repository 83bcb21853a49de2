import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Option } from 'commander';
import { ConfigError } from '../../config/upstreams.js';
import { exportArchive } from '../../lifecycle/archives/export-archive.js';
import { errorText } from '../../error-text.js';
import { parseImageReference, type ImageReference } from '../../oci/image-reference.js';
import type { AdminCommandRegistrar } from './index.js';
import { adminLogger, formatBytes, openAdminStorage, shortDigest } from './runtime.js';

interface ExportFlags {
  output: string;
}

/**
 * `oci-registry [global flags] filesystem --root DIR export IMAGE... -o FILE.tar`
 *
 * Writes cached images as an OCI image-layout tarball, from the cache only (no upstream contact): carry
 * it into an air-gapped site and `import` it there, digests unchanged. `-o -` writes to stdout.
 */
export const registerExport: AdminCommandRegistrar = (storageCommand, context) => {
  storageCommand
    .command('export')
    .description('write cached images as an OCI image-layout tarball (for import elsewhere); reads the cache only')
    .argument('<images...>', 'image references as for prefetch; a tag is looked up in the cache')
    .addOption(new Option('-o, --output <file>', 'the tarball to write (- for stdout)').makeOptionMandatory())
    .action(async (images: string[], flags: ExportFlags) => {
      let refs: ImageReference[];
      try {
        refs = images.map((i) => parseImageReference(i));
      } catch (e) {
        throw new ConfigError(`export: ${errorText(e)}`);
      }
      const ctx = context();
      const log = adminLogger(ctx);
      const storage = await openAdminStorage(ctx, log, { existing: { command: 'export' } });
      const toStdout = flags.output === '-';
      // The report goes wherever the archive does not.
      const report = toStdout ? process.stderr : process.stdout;
      const temp = toStdout ? undefined : join(dirname(flags.output), `.${basename(flags.output)}.${process.pid}.partial`);
      try {
        const out = toStdout ? process.stdout : createWriteStream(temp as string, { flags: 'wx' });
        let result;
        try {
          result = await exportArchive(refs, out, { storage });
        } catch (e) {
          if (!toStdout) out.destroy();
          throw e;
        }
        if (temp) await rename(temp, flags.output);
        for (const img of result.images) {
          report.write(
            `exported ${img.reference}  ${shortDigest(img.digest)}  ${img.manifests} manifest${img.manifests === 1 ? '' : 's'}, ${img.blobs} blobs, ${formatBytes(img.bytes)}\n`,
          );
        }
        for (const w of result.warnings) report.write(`warning: ${w}\n`);
        report.write(
          `wrote ${toStdout ? 'stdout' : flags.output}: ${result.images.length} image${result.images.length === 1 ? '' : 's'}, ${result.entries} blobs (manifests included), ${formatBytes(result.bytes)}\n`,
        );
      } finally {
        if (temp) await rm(temp, { force: true }).catch(() => undefined);
        await storage.close();
      }
    });
};
