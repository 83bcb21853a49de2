/** BlobService with an in-memory storage and upstream: one download for concurrent requests, then hits. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { BlobService } from '../../src/proxy/blob-service.js';
import { randomBytesSeeded, sha256 } from '../fixtures/content.js';
import { MemoryStorage } from '../helpers/memory-storage.js';
import { FakeUpstream, silentLog, testLinks, testRepo } from '../helpers/proxy-fakes.js';
import { readAll } from './download/download-kit.js';

async function setup(t: Test) {
  const spoolDir = await mkdtemp(join(tmpdir(), 'blob-service-test-'));
  t.teardown(() => rm(spoolDir, { recursive: true, force: true }));
  const storage = new MemoryStorage();
  const upstream = new FakeUpstream();
  const now = () => Date.now();
  const service = new BlobService({
    storage,
    upstreams: upstream.upstreams,
    spoolDir,
    log: silentLog,
    links: testLinks(storage, now),
    now,
  });
  return { storage, upstream, service };
}

t.test('two concurrent requests for an uncached blob share one download', async (t) => {
  const { storage, upstream, service } = await setup(t);
  const bytes = randomBytesSeeded(3 * 1024 * 1024, 1);
  const digest = upstream.addBlob(bytes);
  let release!: () => void;
  upstream.blobGate = new Promise((r) => (release = r));
  const repo = testRepo();
  const first = service.open(repo, digest);
  const second = service.open(repo, digest);
  await new Promise((r) => setTimeout(r, 20));
  release();
  const handles = await Promise.all([first, second]);
  t.same(handles.map((h) => h.outcome).sort(), ['coalesced', 'miss'], 'one started it, the other joined');
  const bodies = await Promise.all(handles.map(async (h) => sha256(await readAll(await h.open()))));
  t.same(bodies, [digest, digest], 'both got exact bytes');
  t.equal(upstream.calls.getBlob, 1, 'one download upstream');
  await service.settled(digest);
  t.ok(storage.blobs.get(digest)?.bytes.equals(bytes), 'stored once verified');
  t.equal(service.inflightCount, 0, 'no download left in flight');
  const third = await service.open(repo, digest);
  t.equal(third.outcome, 'hit', 'the next request is a hit');
  t.equal(sha256(await readAll(await third.open())), digest);
  t.equal(upstream.calls.getBlob, 1, 'without a download');
});

t.test('a blob upstream sends wrong bytes for is not stored, and the next request downloads again', async (t) => {
  const { storage, upstream, service } = await setup(t);
  const bytes = randomBytesSeeded(100_000, 2);
  const digest = upstream.addBlob(bytes);
  upstream.blobs.set(digest, randomBytesSeeded(100_000, 3));
  const repo = testRepo();
  const handle = await service.open(repo, digest);
  await t.rejects(readAll(await handle.open()), /does not match its digest/);
  await service.settled(digest);
  t.equal(storage.blobs.size, 0, 'nothing stored');
  upstream.blobs.set(digest, bytes);
  const again = await service.open(repo, digest);
  t.equal(again.outcome, 'miss', 'a new download');
  t.equal(sha256(await readAll(await again.open())), digest);
  t.equal(upstream.calls.getBlob, 2);
});
