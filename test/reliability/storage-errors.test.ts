/**
 * A cache disk that is full or unwritable degrades to serving from upstream without caching: the pull
 * succeeds, nothing half-written is visible, and the failures are counted in the metrics. (Tests run
 * as root, where permissions do not bite, so the errors come from a storage whose writes fail the way
 * the kernel reports them.)
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { FilesystemStorage } from '../../src/storage/filesystem/filesystem-storage.js';
import type { BlobWriter, RepositoryRef, StoredManifest, TagRecord } from '../../src/storage/storage.js';
import { randomBytesSeeded, sha256 } from '../fixtures/content.js';
import { startFixtureUpstream } from '../fixtures/upstream.js';
import { startMirror } from '../helpers/mirror.js';

function errno(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: simulated`), { code });
}

/** A filesystem cache whose writes fail: ENOSPC (disk full) or EACCES (unwritable). */
class FailingStorage extends FilesystemStorage {
  constructor(
    root: string,
    private readonly code: 'ENOSPC' | 'EACCES',
    private readonly failAt: 'create' | 'write',
  ) {
    super(root);
  }
  override async createBlobWriter(digest: string): Promise<BlobWriter> {
    if (this.failAt === 'create') throw errno(this.code);
    const inner = await super.createBlobWriter(digest);
    const code = this.code;
    let written = 0;
    return {
      localPath: inner.localPath,
      // Half a megabyte fits on the disk; the rest does not.
      write: async (chunk) => {
        if (written > 512 * 1024) throw errno(code);
        written += chunk.length;
        await inner.write(chunk);
      },
      writev: async (chunks) => {
        if (written > 512 * 1024) throw errno(code);
        for (const c of chunks) written += c.length;
        await inner.writev?.(chunks);
      },
      commit: () => inner.commit(),
      abort: () => inner.abort(),
    };
  }
  override async putManifest(_digest: string, _m: StoredManifest): Promise<void> {
    throw errno(this.code);
  }
  override async putTag(_repo: RepositoryRef, _tag: string, _r: TagRecord): Promise<void> {
    throw errno(this.code);
  }
}

async function metric(url: string, name: string, labels: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(labels));
  return line ? Number(line.split(' ').pop()) : 0;
}

for (const code of ['EACCES', 'ENOSPC'] as const) {
  t.test(`${code} when a blob write starts: the pull is served from upstream, uncached, and counted`, async (t) => {
    const up = await startFixtureUpstream();
    const layer = randomBytesSeeded(2_000_000, 11);
    const image = up.addImage('team/app', { tag: 'v1', layers: [layer] });
    const root = await mkdtemp(join(tmpdir(), 'storage-errors-'));
    const m = await startMirror({
      upstreams: [{ namespace: 'docker.io', host: up.host }],
      storage: new FailingStorage(root, code, 'create'),
    });
    t.teardown(async () => {
      await m.close();
      await up.close();
      await rm(root, { recursive: true, force: true });
    });

    const manifest = await fetch(`${m.url}/v2/team/app/manifests/v1`);
    t.equal(manifest.status, 200, 'manifest served although it cannot be stored');
    t.equal(manifest.headers.get('docker-content-digest'), image.digest);
    const digest = image.layerDigests[0] as string;
    const blob = await fetch(`${m.url}/v2/team/app/blobs/${digest}`);
    t.equal(blob.status, 200);
    t.equal(sha256(Buffer.from(await blob.arrayBuffer())), digest, 'the client gets every byte');
    await m.server.mirror.drain();

    t.equal(await m.storage.statBlob(digest), undefined, 'nothing stored');
    t.same(await readdir(join(root, 'tmp')), [], 'no temp file left');
    t.ok((await metric(m.url, 'oci_registry_storage_errors_total', 'operation="create_blob"')) >= 1, 'blob failure counted');
    t.ok((await metric(m.url, 'oci_registry_storage_errors_total', 'operation="put_manifest"')) >= 1, 'manifest failure counted');
  });
}

t.test('ENOSPC in the middle of a blob: nothing half-written becomes visible and the next pull succeeds', async (t) => {
  const up = await startFixtureUpstream();
  const bytes = randomBytesSeeded(3_000_000, 12);
  const digest = up.addBlob(bytes);
  const root = await mkdtemp(join(tmpdir(), 'storage-errors-'));
  const m = await startMirror({
    upstreams: [{ namespace: 'docker.io', host: up.host }],
    storage: new FailingStorage(root, 'ENOSPC', 'write'),
  });
  t.teardown(async () => {
    await m.close();
    await up.close();
    await rm(root, { recursive: true, force: true });
  });
  const url = `${m.url}/v2/library/x/blobs/${digest}`;
  // The disk filling up under the spool cuts the transfers of that download (the client retries).
  const first = await fetch(url);
  await t.rejects(first.arrayBuffer(), 'the transfer whose spool failed is cut, never completed with wrong bytes');
  await m.server.mirror.drain();
  t.equal(await m.storage.statBlob(digest), undefined, 'nothing stored');
  t.same(await readdir(join(root, 'tmp')), [], 'the temp file is removed');
  t.same(await readdir(join(root, 'blobs')), [], 'no blob visible');

  // The client's retry: the mirror now streams from upstream without the disk.
  const retry = Buffer.from(await (await fetch(url)).arrayBuffer());
  t.equal(sha256(retry), digest, 'the retry gets every byte, uncached');
  t.equal(await m.storage.statBlob(digest), undefined, 'still nothing stored');
  t.ok((await metric(m.url, 'oci_registry_storage_errors_total', 'operation="write_blob"')) >= 1, 'the write failure is counted');
});
