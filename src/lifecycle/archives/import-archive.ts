import { errorText } from '../../error-text.js';
import type { Logger } from 'pino';
import type { Storage } from '../../storage/storage.js';
import { ArchiveContents } from './import/archive-contents.js';
import { parseAs } from './import/assign-names.js';
import { commitPlan } from './import/commit-plan.js';
import { ImportError } from './import/import-error.js';
import { ImportLedger } from './import/import-ledger.js';
import { importReport, type ImportReport } from './import/import-report.js';
import { planImport } from './import/plan.js';
import { readTar } from './import/read-tar.js';
import { ImportSpool } from './import/spool.js';
import { EntryIntake } from './import/take-entry.js';

export { ImportError } from './import/import-error.js';
export type { ImportedImage, ImportReport } from './import/import-report.js';

/**
 * Loads an image tarball into the cache, for air-gapped sites:
 *
 * - `docker save` / `skopeo copy ... docker-archive:` (manifest.json + config + layer tars). Such an
 *   archive holds no registry manifest, so a Docker schema2 manifest is built whose descriptors name the
 *   blobs exactly as stored (uncompressed layers stay `...rootfs.diff.tar`): its digest differs from the
 *   registry's when the archive lost the compressed layers, but the config digest and the diff_ids
 *   are the original ones. Each layer is checked against the config's diff_id.
 * - an OCI image layout tarball (`skopeo copy ... oci-archive:`, `export`): manifests and blobs are
 *   kept byte for byte, so every digest is the original one. Each blob is checked against its name.
 *
 * Entries may come in any order (manifest.json often comes last), so every blob is streamed into storage
 * as it is met, hashed on the way and committed only when it matches the digest its name claims; a
 * blob without such a name (`<id>/layer.tar`) goes through a local spool file first. Small JSON files
 * (manifests, configs) are kept in memory until the end, when the manifests are resolved, checked and
 * stored, and only then the tags. Any failure deletes every blob and manifest this import added: a
 * refused archive leaves the cache as it was.
 *
 * The steps, one file each under import/: read-tar (the tar stream), take-entry and stream-entry (each
 * entry into memory or storage), plan, plan-oci, plan-docker and assign-names (checking the archive and
 * naming its images), commit-plan (storing manifests, links and tags), import-report (the summary);
 * import-ledger records what was added, for the rollback.
 */

export interface ImportArchiveOptions {
  storage: Storage;
  /** `[NAMESPACE/]REPOSITORY[:TAG]`: where to register the image instead of the names in the archive. */
  as?: string | undefined;
  /** Directory for spool files (blobs whose digest is not in their name). Default: a temp dir. */
  spoolDir?: string | undefined;
  log?: Logger | undefined;
  now?: () => number;
}

/** Imports a docker-archive or OCI-archive tarball (optionally gzip-compressed as a whole). */
export async function importArchive(file: string, options: ImportArchiveOptions): Promise<ImportReport> {
  const as = options.as === undefined ? undefined : parseAs(options.as);
  const storage = options.storage;
  const now = options.now ?? Date.now;
  const contents = new ArchiveContents(storage);
  const ledger = new ImportLedger(storage);
  const spool = new ImportSpool(options.spoolDir);
  try {
    const intake = new EntryIntake({ storage, contents, ledger, spool });
    await readTar(file, (entry) => intake.take(entry));
    const plan = await planImport({ storage, contents, ledger }, as);
    const referenced = await commitPlan(plan, storage, ledger, new Date(now()));
    for (const w of plan.warnings) options.log?.warn({ warning: w }, 'import');
    return importReport(plan, referenced, ledger.reused);
  } catch (e) {
    await ledger.rollback();
    if (e instanceof ImportError) throw e;
    throw new ImportError(errorText(e), { cause: e });
  } finally {
    await spool.cleanup();
  }
}
