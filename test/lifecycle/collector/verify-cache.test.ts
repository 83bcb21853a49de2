import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { verifyCache } from '../../../src/lifecycle/collector/verify-cache.js';
import { createLogger } from '../../../src/log.js';
import { FilesystemStorage } from '../../../src/storage/filesystem/filesystem-storage.js';
import { randomBytesSeeded, sha256 } from '../../fixtures/content.js';

async function storeBlob(storage: FilesystemStorage, bytes: Buffer): Promise<string> {
  const digest = sha256(bytes);
  const w = await storage.createBlobWriter(digest);
  await w.write(bytes);
  await w.commit();
  return digest;
}

t.test('--verify-cache deletes blobs whose bytes do not hash to their name and keeps the rest', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'verify-cache-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const storage = new FilesystemStorage(root);
  await storage.init();
  const good = await storeBlob(storage, randomBytesSeeded(300_000, 1));
  const bad = await storeBlob(storage, randomBytesSeeded(300_000, 2));
  // Bit rot: same size, one byte different.
  const rotten = randomBytesSeeded(300_000, 2);
  rotten[1000] = (rotten[1000] ?? 0) ^ 0xff;
  await writeFile(storage.paths.blob(bad), rotten);

  const report = await verifyCache(storage, createLogger('silent'));
  t.equal(report.checked, 2);
  t.equal(report.corrupt, 1);
  t.ok(await storage.statBlob(good), 'good blob kept');
  t.equal(await storage.statBlob(bad), undefined, 'corrupt blob deleted');
});
