import type { Logger } from 'pino';
import { createDigester, tryParseDigest } from '../../oci/digest.js';
import type { Storage } from '../../storage/storage.js';

export interface VerifyReport {
  checked: number;
  corrupt: number;
  bytes: number;
}

/**
 * Rehashes every stored blob and deletes the ones whose bytes do not match their name (bit rot, a disk
 * that lied about a write, a hand-edited cache). Streams each blob: memory stays flat.
 */
export async function verifyCache(storage: Storage, log: Logger): Promise<VerifyReport> {
  const report: VerifyReport = { checked: 0, corrupt: 0, bytes: 0 };
  for await (const blob of storage.listBlobs()) {
    const d = tryParseDigest(blob.digest);
    if (!d) continue;
    const stream = await storage.readBlob(blob.digest);
    if (!stream) continue;
    const hash = createDigester(d.algorithm);
    let size = 0;
    for await (const chunk of stream) {
      hash.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
    report.checked++;
    report.bytes += size;
    if (`${d.algorithm}:${hash.digest('hex')}` !== blob.digest) {
      report.corrupt++;
      log.error({ digest: blob.digest }, 'cached blob does not match its digest; deleted');
      await storage.deleteBlob(blob.digest);
    }
  }
  log.info(report, 'cache verified');
  return report;
}
