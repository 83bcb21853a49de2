/**
 * exportArchive reads the cache only and writes an OCI layout tarball that importArchive loads back
 * with the same digests (the skopeo round trip is in test/e2e/import.test.ts).
 */
import { createWriteStream } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import tar from 'tar-stream';
import { exportArchive } from '../../../src/lifecycle/archives/export-archive.js';
import { importArchive } from '../../../src/lifecycle/archives/import-archive.js';
import { parseImageReference } from '../../../src/oci/image-reference.js';
import { FilesystemStorage } from '../../../src/storage/filesystem/filesystem-storage.js';
import { makeImage, makeIndex, type Index } from '../../fixtures/images.js';

async function ociTarball(index: Index, refName: string): Promise<Buffer> {
  const pack = tar.pack();
  const blobs = new Map<string, Buffer>([[index.manifestDigest, index.manifest]]);
  for (const img of index.images) {
    blobs.set(img.manifestDigest, img.manifest);
    blobs.set(img.configDigest, img.config);
    for (const l of img.layers) blobs.set(l.digest, l.bytes);
  }
  for (const [d, b] of blobs) pack.entry({ name: `blobs/sha256/${d.slice(7)}`, size: b.length }, b);
  const idx = {
    schemaVersion: 2,
    manifests: [
      {
        mediaType: index.mediaType,
        digest: index.manifestDigest,
        size: index.manifest.length,
        annotations: { 'org.opencontainers.image.ref.name': refName },
      },
    ],
  };
  pack.entry({ name: 'index.json' }, Buffer.from(JSON.stringify(idx)));
  pack.entry({ name: 'oci-layout' }, Buffer.from('{"imageLayoutVersion":"1.0.0"}'));
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

async function setup(t: Test): Promise<{ dir: string; storage: FilesystemStorage; index: Index }> {
  const dir = await mkdtemp(join(tmpdir(), 'export-archive-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const storage = new FilesystemStorage(join(dir, 'a'));
  await storage.init();
  const index = makeIndex(
    [
      await makeImage({ format: 'oci', layers: 2, layerSize: 200 << 10, seed: 21 }),
      await makeImage({ format: 'oci', layers: 1, seed: 22, architecture: 'arm64' }),
    ],
    'oci',
  );
  await writeFile(join(dir, 'in.tar'), await ociTarball(index, 'registry.test/team/app:1'));
  await importArchive(join(dir, 'in.tar'), { storage });
  return { dir, storage, index };
}

async function exportTo(storage: FilesystemStorage, refs: string[], file: string) {
  return exportArchive(
    refs.map((r) => parseImageReference(r)),
    createWriteStream(file),
    { storage },
  );
}

const files = async (root: string, sub: string): Promise<string[]> =>
  (await readdir(join(root, sub), { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile())
    .map((e) => e.name)
    .sort();

t.test('an exported image imports into an empty cache with the same manifests, blobs and tag', async (t) => {
  const { dir, storage, index } = await setup(t);
  const report = await exportTo(storage, ['registry.test/team/app:1'], join(dir, 'out.tar'));
  t.same(
    report.images.map((i) => [i.reference, i.digest, i.manifests]),
    [['registry.test/team/app:1', index.manifestDigest, 3]],
  );
  const other = new FilesystemStorage(join(dir, 'b'));
  await other.init();
  const imported = await importArchive(join(dir, 'out.tar'), { storage: other });
  t.same(imported.images[0]?.names, ['registry.test/team/app:1']);
  for (const sub of ['blobs', 'manifests']) t.same(await files(join(dir, 'b'), sub), await files(join(dir, 'a'), sub), `same ${sub}`);
  t.equal((await other.getTag({ namespace: 'registry.test', repository: 'team/app' }, '1'))?.digest, index.manifestDigest);
});

t.test('an image given by digest is exported and imported untagged', async (t) => {
  const { dir, storage, index } = await setup(t);
  await exportTo(storage, [`registry.test/team/app@${index.manifestDigest}`], join(dir, 'out.tar'));
  const other = new FilesystemStorage(join(dir, 'b'));
  await other.init();
  const imported = await importArchive(join(dir, 'out.tar'), { storage: other });
  t.same(
    imported.images.map((i) => [i.digest, i.names]),
    [[index.manifestDigest, []]],
  );
  t.same(imported.warnings, [], 'a digest reference is a name: no warning');
  t.ok(await other.getManifest(index.manifestDigest));
});

t.test('export refuses an image that is not cached', async (t) => {
  const { dir, storage } = await setup(t);
  await t.rejects(exportTo(storage, ['registry.test/team/other:1'], join(dir, 'out.tar')), /not in the cache/);
});

t.test('export refuses an image whose layer is missing from the cache', async (t) => {
  const { dir, storage, index } = await setup(t);
  await storage.deleteBlob(index.images[0]?.layers[1]?.digest ?? '');
  await t.rejects(exportTo(storage, ['registry.test/team/app:1'], join(dir, 'out.tar')), /is not in the cache/);
});

t.test('export leaves out index children that are not cached, with a warning', async (t) => {
  const { dir, storage, index } = await setup(t);
  await storage.deleteManifest(index.images[1]?.manifestDigest ?? '');
  const report = await exportTo(storage, ['registry.test/team/app:1'], join(dir, 'out.tar'));
  t.equal(report.images[0]?.manifests, 2);
  t.match(report.warnings, [/linux\/arm64 .* is not cached/]);
});

t.test('export fails on a cached blob that no longer matches its digest', async (t) => {
  const { dir, storage, index } = await setup(t);
  const layer = index.images[0]?.layers[0];
  const rotten = Buffer.from(layer?.bytes ?? Buffer.alloc(0));
  rotten[10] = (rotten[10] ?? 0) ^ 0xff;
  await writeFile(storage.paths.blob(layer?.digest ?? ''), rotten);
  await t.rejects(exportTo(storage, ['registry.test/team/app:1'], join(dir, 'out.tar')), /does not match/);
});
