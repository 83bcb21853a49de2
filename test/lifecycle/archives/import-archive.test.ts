/**
 * importArchive on hand-made tarballs: corrupt and truncated inputs are refused and leave the cache as it
 * was; the layouts real tools write (skopeo's docker-archive, legacy `docker save`, OCI layouts, a
 * gzip-compressed whole) are read whatever the order of their entries.
 */
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import t, { type Test } from 'tap';
import tar from 'tar-stream';
import { importArchive, ImportError } from '../../../src/lifecycle/archives/import-archive.js';
import { FilesystemStorage } from '../../../src/storage/filesystem/filesystem-storage.js';
import { makeImage, makeIndex, sha256, type Image, type Index } from '../../fixtures/images.js';

interface TarEntry {
  name: string;
  content?: Buffer;
  /** A symlink to this target instead of a file. */
  symlink?: string;
}

async function makeTarball(entries: TarEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  for (const e of entries) {
    if (e.symlink !== undefined) pack.entry({ name: e.name, type: 'symlink', linkname: e.symlink });
    else pack.entry({ name: e.name, size: e.content?.length ?? 0 }, e.content ?? Buffer.alloc(0));
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

const hex = (digest: string): string => digest.slice('sha256:'.length);

/** skopeo's docker-archive: `<diff_id>.tar` (uncompressed), `<config digest>.json`, manifest.json. */
function dockerArchiveEntries(img: Image, repoTag: string, corruptLayer?: number): TarEntry[] {
  const layers = img.layers.map((l, i) => {
    const bytes = gunzipSync(l.bytes);
    if (i === corruptLayer) bytes[bytes.length >> 1] = (bytes[bytes.length >> 1] ?? 0) ^ 0xff;
    return { name: `${hex(l.diffId)}.tar`, content: bytes };
  });
  const manifest = [{ Config: `${hex(img.configDigest)}.json`, RepoTags: [repoTag], Layers: layers.map((l) => l.name) }];
  return [
    ...layers,
    { name: `${hex(img.configDigest)}.json`, content: img.config },
    { name: 'manifest.json', content: Buffer.from(JSON.stringify(manifest)) },
  ];
}

/** An OCI image layout: blobs/sha256/<hex>, index.json, oci-layout (in skopeo's order: blobs first). */
function ociLayoutEntries(item: Image | Index, refName: string, corrupt?: string): TarEntry[] {
  const blobs = new Map<string, Buffer>();
  for (const img of item.kind === 'index' ? item.images : [item]) {
    blobs.set(img.configDigest, img.config);
    for (const l of img.layers) blobs.set(l.digest, l.bytes);
    blobs.set(img.manifestDigest, img.manifest);
  }
  blobs.set(item.manifestDigest, item.manifest);
  const entries: TarEntry[] = [...blobs].map(([digest, bytes]) => {
    const content = Buffer.from(bytes);
    if (digest === corrupt) content[content.length - 1] = (content[content.length - 1] ?? 0) ^ 0xff;
    return { name: `blobs/sha256/${hex(digest)}`, content };
  });
  const index = {
    schemaVersion: 2,
    manifests: [
      {
        mediaType: item.mediaType,
        digest: item.manifestDigest,
        size: item.manifest.length,
        annotations: { 'org.opencontainers.image.ref.name': refName },
      },
    ],
  };
  return [
    ...entries,
    { name: 'index.json', content: Buffer.from(JSON.stringify(index)) },
    { name: 'oci-layout', content: Buffer.from('{"imageLayoutVersion":"1.0.0"}') },
  ];
}

interface Cache {
  root: string;
  storage: FilesystemStorage;
  file(name: string, bytes: Buffer): Promise<string>;
  /** Every file under blobs/, manifests/, repositories/ and tmp/. */
  contents(): Promise<string[]>;
}

async function cache(t: Test): Promise<Cache> {
  const dir = await mkdtemp(join(tmpdir(), 'import-archive-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const root = join(dir, 'cache');
  const storage = new FilesystemStorage(root);
  await storage.init();
  return {
    root,
    storage,
    file: async (name, bytes) => {
      const path = join(dir, name);
      await writeFile(path, bytes);
      return path;
    },
    contents: async () => {
      const out: string[] = [];
      for (const sub of ['blobs', 'manifests', 'repositories', 'tmp']) {
        for (const e of await readdir(join(root, sub), { recursive: true, withFileTypes: true }).catch(() => [])) {
          if (e.isFile()) out.push(join(e.parentPath, e.name).slice(root.length + 1));
        }
      }
      return out.sort();
    },
  };
}

const image = (seed: number, layers = 2): Promise<Image> => makeImage({ format: 'docker', layers, layerSize: 96 << 10, seed });

t.test('a docker-archive layer whose bytes do not match its digest is refused and nothing is stored', async (t) => {
  const c = await cache(t);
  const img = await image(1);
  const file = await c.file('bad.tar', await makeTarball(dockerArchiveEntries(img, 'fixture.test/org/app:1', 1)));
  await t.rejects(importArchive(file, { storage: c.storage }), { name: 'ImportError', message: /does not match/ });
  t.same(await c.contents(), [], 'no blob, manifest, tag or temp file');
});

t.test('a legacy docker save layer (no digest in its name) that does not match its diff_id is refused and nothing is stored', async (t) => {
  const c = await cache(t);
  const img = await image(2);
  const layers = img.layers.map((l, i) => {
    const bytes = gunzipSync(l.bytes);
    if (i === 0) bytes[100] = (bytes[100] ?? 0) ^ 0xff;
    return { name: `${'a'.repeat(63)}${i}/layer.tar`, content: bytes };
  });
  const manifest = [{ Config: `${hex(img.configDigest)}.json`, RepoTags: ['org/app:1'], Layers: layers.map((l) => l.name) }];
  const file = await c.file(
    'legacy-bad.tar',
    await makeTarball([
      ...layers,
      { name: `${hex(img.configDigest)}.json`, content: img.config },
      { name: 'manifest.json', content: Buffer.from(JSON.stringify(manifest)) },
    ]),
  );
  await t.rejects(importArchive(file, { storage: c.storage }), { name: 'ImportError', message: /diff_id/ });
  t.same(await c.contents(), [], 'the good layer stored on the way was deleted again');
});

t.test('an OCI layout blob whose bytes do not match its name is refused and nothing is stored', async (t) => {
  const c = await cache(t);
  const img = await makeImage({ format: 'oci', layers: 2, layerSize: 96 << 10, seed: 3 });
  const file = await c.file('bad-oci.tar', await makeTarball(ociLayoutEntries(img, 'fixture.test/org/app:1', img.layers[1]?.digest)));
  await t.rejects(importArchive(file, { storage: c.storage }), { name: 'ImportError', message: /does not match its digest/ });
  t.same(await c.contents(), []);
});

t.test('a truncated tar fails cleanly and stores nothing', async (t) => {
  const c = await cache(t);
  const img = await makeImage({ format: 'oci', layers: 2, layerSize: 256 << 10, seed: 4 });
  const whole = await makeTarball(ociLayoutEntries(img, 'fixture.test/org/app:1'));
  // Cut in the middle of the second layer's bytes, after the first layer was stored.
  const file = await c.file('truncated.tar', whole.subarray(0, Math.floor(whole.length * 0.7)));
  await t.rejects(importArchive(file, { storage: c.storage }), { name: 'ImportError', message: /not a readable tar archive/ });
  t.same(await c.contents(), []);
});

t.test('a tar cut at an entry boundary is refused as incomplete and stores nothing', async (t) => {
  const c = await cache(t);
  const img = await image(5);
  const entries = dockerArchiveEntries(img, 'fixture.test/org/app:1');
  const file = await c.file('cut.tar', await makeTarball(entries.filter((e) => e.name !== `${hex(img.layers[1]?.diffId ?? '')}.tar`)));
  await t.rejects(importArchive(file, { storage: c.storage }), { name: 'ImportError', message: /not in the archive/ });
  t.same(await c.contents(), []);
});

t.test('a file that is not an image archive is refused', async (t) => {
  const c = await cache(t);
  const file = await c.file('other.tar', await makeTarball([{ name: 'hello.txt', content: Buffer.from('hello\n') }]));
  await t.rejects(importArchive(file, { storage: c.storage }), { name: 'ImportError', message: /no manifest\.json/ });
  const junk = await c.file('junk.tar', Buffer.alloc(3000, 7));
  await t.rejects(importArchive(junk, { storage: c.storage }), ImportError);
  t.same(await c.contents(), []);
});

t.test(
  'a legacy docker save archive (layer.tar per layer id, gzip layer, manifest.json last) is imported with matching layer media types',
  async (t) => {
    const c = await cache(t);
    const img = await image(6);
    // Layer 0 as docker saves it (uncompressed), layer 1 still gzip-compressed; the second path is a symlink.
    const l0 = gunzipSync(img.layers[0]?.bytes ?? Buffer.alloc(0));
    const l1 = img.layers[1]?.bytes ?? Buffer.alloc(0);
    const manifest = [
      { Config: `${hex(img.configDigest)}.json`, RepoTags: ['org/app:1', 'org/app:latest'], Layers: ['id0/layer.tar', 'id1/layer.tar'] },
    ];
    const file = await c.file(
      'legacy.tar',
      await makeTarball([
        { name: 'id0/VERSION', content: Buffer.from('1.0') },
        { name: 'id0/json', content: Buffer.from('{"id":"id0"}') },
        { name: 'id0/layer.tar', content: l0 },
        { name: 'shared/layer.tar', content: l1 },
        { name: 'id1/layer.tar', symlink: '../shared/layer.tar' },
        { name: `${hex(img.configDigest)}.json`, content: img.config },
        { name: 'repositories', content: Buffer.from('{}') },
        { name: 'manifest.json', content: Buffer.from(JSON.stringify(manifest)) },
      ]),
    );
    const before = Date.now();
    const report = await importArchive(file, { storage: c.storage });
    t.equal(report.format, 'docker-archive');
    t.same(report.images[0]?.names, ['docker.io/org/app:1', 'docker.io/org/app:latest']);
    const digest = report.images[0]?.digest ?? '';
    const stored = await c.storage.getManifest(digest);
    t.ok(stored, 'manifest stored');
    t.equal(sha256(stored?.bytes ?? Buffer.alloc(0)), digest, 'it hashes to its digest');
    const doc = JSON.parse(stored?.bytes.toString('utf8') ?? '{}') as {
      config: { digest: string };
      layers: { mediaType: string; digest: string; size: number }[];
    };
    t.equal(doc.config.digest, img.configDigest);
    t.same(doc.layers, [
      { mediaType: 'application/vnd.docker.image.rootfs.diff.tar', size: l0.length, digest: sha256(l0) },
      { mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: l1.length, digest: img.layers[1]?.digest },
    ]);
    for (const d of [img.configDigest, sha256(l0), img.layers[1]?.digest ?? ''])
      t.ok(await c.storage.statBlob(d), `blob ${d.slice(0, 19)} stored`);
    const tag = await c.storage.getTag({ namespace: 'docker.io', repository: 'org/app' }, 'latest');
    t.equal(tag?.digest, digest, 'the tag points to it');
    t.ok((tag?.checkedAt.getTime() ?? 0) >= before, 'and is fresh');
    t.same(
      (await c.contents()).filter((p) => p.startsWith('tmp/')),
      [],
      'no temp file left',
    );
  },
);

t.test('an OCI layout whose index.json comes first and whose blobs are in any order is imported byte for byte', async (t) => {
  const c = await cache(t);
  const multi = makeIndex(
    [await makeImage({ format: 'oci', layers: 1, seed: 7 }), await makeImage({ format: 'oci', layers: 1, seed: 8, architecture: 'arm64' })],
    'oci',
  );
  const entries = ociLayoutEntries(multi, 'registry.test/team/multi:2');
  const reordered = [...entries.slice(-2), ...entries.slice(0, -2).reverse()];
  const file = await c.file('oci.tar', await makeTarball(reordered));
  const report = await importArchive(file, { storage: c.storage });
  t.same(
    report.images.map((i) => [i.digest, i.names]),
    [[multi.manifestDigest, ['registry.test/team/multi:2']]],
  );
  for (const m of [multi, ...multi.images])
    t.ok((await c.storage.getManifest(m.manifestDigest))?.bytes.equals(m.manifest), `${m.manifestDigest.slice(0, 19)} byte for byte`);
});

t.test('a gzip-compressed archive (docker save | gzip) is imported', async (t) => {
  const c = await cache(t);
  const img = await image(9, 1);
  const file = await c.file('alpine.tar.gz', gzipSync(await makeTarball(dockerArchiveEntries(img, 'alpine:3.20'))));
  const report = await importArchive(file, { storage: c.storage });
  t.same(report.images[0]?.names, ['docker.io/library/alpine:3.20']);
});

t.test('--as names the repository and tag of an archive that holds one image', async (t) => {
  const c = await cache(t);
  const img = await image(10, 1);
  const file = await c.file('as.tar', await makeTarball(dockerArchiveEntries(img, 'alpine:3.20')));
  const report = await importArchive(file, { storage: c.storage, as: 'registry.test/mirror/alpine:stable' });
  t.same(report.images[0]?.names, ['registry.test/mirror/alpine:stable']);
  t.equal(
    await c.storage.getTag({ namespace: 'docker.io', repository: 'library/alpine' }, '3.20'),
    undefined,
    'the archive name is not registered',
  );
});

t.test('an import that fails keeps the blobs that were cached before it', async (t) => {
  const c = await cache(t);
  const img = await image(11);
  const good = await c.file('good.tar', await makeTarball(dockerArchiveEntries(img, 'org/app:1')));
  await importArchive(good, { storage: c.storage });
  const before = await c.contents();
  const bad = await c.file('bad.tar', await makeTarball(dockerArchiveEntries(img, 'org/app:2', 1)));
  await t.rejects(importArchive(bad, { storage: c.storage }), ImportError);
  t.same(await c.contents(), before, 'the cache is as it was');
});
