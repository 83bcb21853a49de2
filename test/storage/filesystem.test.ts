import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { digestOf } from '../../src/oci/digest.js';
import { FilesystemStorage } from '../../src/storage/filesystem/filesystem-storage.js';
import { hostileOperations, storageContract } from './contract.js';

async function makeFilesystemStorage() {
  const dir = await mkdtemp(join(tmpdir(), 'fs-storage-'));
  const storage = new FilesystemStorage(join(dir, 'cache'));
  await storage.init();
  return { dir, storage, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

await storageContract(t, 'filesystem', async () => {
  const { storage, cleanup } = await makeFilesystemStorage();
  return { storage, cleanup };
});

t.test('init sweeps what a crash left in tmp/', async (t) => {
  const { storage, cleanup } = await makeFilesystemStorage();
  t.teardown(cleanup);
  await writeFile(join(storage.paths.tmp, 'leftover.part'), 'half a blob');
  await mkdir(join(storage.paths.tmp, 'a-dir'));
  await storage.init();
  t.same(await readdir(storage.paths.tmp), [], 'tmp/ is empty');
});

t.test('init shared (an admin command beside a running server) keeps tmp/, where the server writes', async (t) => {
  const { storage, cleanup } = await makeFilesystemStorage();
  t.teardown(cleanup);
  await writeFile(join(storage.paths.tmp, 'in-flight.part'), 'a download in progress');
  await storage.init({ shared: true });
  t.same(await readdir(storage.paths.tmp), ['in-flight.part']);
});

t.test('init shared creates the layout of a new cache', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fs-storage-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const storage = new FilesystemStorage(join(dir, 'cache'));
  await storage.init({ shared: true });
  t.same((await readdir(storage.paths.root)).sort(), ['blobs', 'manifests', 'repositories', 'tmp']);
});

t.test('localRoot is the cache directory (what free-space checks measure)', async (t) => {
  t.equal(new FilesystemStorage('/var/cache/mirror').localRoot, '/var/cache/mirror');
});

t.test('abort removes the temp file', async (t) => {
  const { storage, cleanup } = await makeFilesystemStorage();
  t.teardown(cleanup);
  const data = Buffer.from('some bytes');
  const writer = await storage.createBlobWriter(digestOf(data));
  await writer.write(data);
  t.ok(writer.localPath && existsSync(writer.localPath), 'the temp file exists while writing');
  await writer.abort();
  t.same(await readdir(storage.paths.tmp), [], 'tmp/ is empty after abort');
});

t.test('hostile names cannot address anything outside the root', async (t) => {
  const { dir, storage, cleanup } = await makeFilesystemStorage();
  t.teardown(cleanup);
  for (const [label, op] of hostileOperations(storage)) await t.rejects(op, label);
  t.same(await readdir(dir), ['cache'], 'nothing was created beside the root');
  t.same((await readdir(storage.paths.root)).sort(), ['blobs', 'manifests', 'repositories', 'tmp'], 'nor inside it');
  t.same(await readdir(storage.paths.repositories), [], 'no repository directory');
});

t.test("a link is a small file under its repository's directory, holding its time", async (t) => {
  const { storage, cleanup } = await makeFilesystemStorage();
  t.teardown(cleanup);
  const digest = digestOf(Buffer.from('x'));
  const hex = digest.slice('sha256:'.length);
  const at = new Date('2024-01-02T03:04:05.006Z');
  await storage.putLink({ namespace: 'docker.io', repository: 'library/nginx' }, 'blob', digest, at);
  const file = join(storage.paths.repositories, 'docker.io', 'library', 'nginx', '_links', 'blobs', 'sha256', hex);
  t.equal(await readFile(file, 'utf8'), at.toISOString());
});
