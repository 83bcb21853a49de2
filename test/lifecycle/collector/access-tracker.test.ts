/**
 * The access tracker (src/lifecycle/collector/access-tracker.ts): last access per digest recorded in memory on
 * the request path, written in batches to this replica's own state object `access/<replica-id>`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { ACCESS_PREFIX, decodeAccess, encodeAccess, readAccessTimes } from '../../../src/lifecycle/collector/access-state.js';
import { AccessTracker } from '../../../src/lifecycle/collector/access-tracker.js';
import { Collector } from '../../../src/lifecycle/collector/collector.js';
import { createLogger } from '../../../src/log.js';
import { FilesystemStorage } from '../../../src/storage/filesystem/filesystem-storage.js';
import type { Storage } from '../../../src/storage/storage.js';
import { randomBytesSeeded, sha256 } from '../../fixtures/content.js';
import { startFixtureUpstream } from '../../fixtures/upstream.js';
import { startMirror } from '../../helpers/mirror.js';

const log = createLogger('silent');
const D1 = sha256('one');
const D2 = sha256('two');
const D3 = sha256('three');

async function storage(t: Test): Promise<FilesystemStorage> {
  const dir = await mkdtemp(join(tmpdir(), 'access-tracker-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const s = new FilesystemStorage(join(dir, 'cache'));
  await s.init();
  return s;
}

async function putBlob(s: Storage, bytes: Buffer): Promise<void> {
  const w = await s.createBlobWriter(sha256(bytes));
  await w.write(bytes);
  await w.commit();
}

async function stored(s: Storage, replica: string): Promise<Map<string, number> | undefined> {
  const bytes = await s.getState(`${ACCESS_PREFIX}${replica}`);
  return bytes ? decodeAccess(bytes)?.access : undefined;
}

/** Counts the state writes a storage receives, and can make the next ones fail. */
function countingPuts(s: Storage): { storage: Storage; puts: () => number; failNext: (n: number) => void } {
  let puts = 0;
  let failures = 0;
  const wrapped = new Proxy(s, {
    get(target, prop, receiver) {
      if (prop === 'putState') {
        return async (name: string, bytes: Buffer) => {
          puts++;
          if (failures > 0) {
            failures--;
            throw new Error('injected write failure');
          }
          return target.putState(name, bytes);
        };
      }
      const value = Reflect.get(target, prop, receiver) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
  return { storage: wrapped, puts: () => puts, failNext: (n) => (failures = n) };
}

t.test('record() writes nothing: accesses reach storage only with a flush', async (t) => {
  const s = await storage(t);
  const { storage: counted, puts } = countingPuts(s);
  const tracker = new AccessTracker({ storage: counted, replicaId: 'r1', log });
  for (let i = 0; i < 1000; i++) tracker.record(i % 2 ? D1 : D2);
  t.equal(puts(), 0, 'no write for 1000 recorded accesses');
  t.equal(await stored(s, 'r1'), undefined, 'no object yet');
  t.equal(await tracker.flush(), true, 'the flush writes');
  t.equal(puts(), 1, 'one write for the whole batch');
  t.same([...(await stored(s, 'r1'))!.keys()].sort(), [D1, D2].sort(), 'both digests stored');
});

t.test('a flush with nothing new writes nothing', async (t) => {
  const { storage: counted, puts } = countingPuts(await storage(t));
  const tracker = new AccessTracker({ storage: counted, replicaId: 'r1', log });
  t.equal(await tracker.flush(), false, 'nothing recorded: no write');
  tracker.record(D1);
  await tracker.flush();
  t.equal(await tracker.flush(), false, 'nothing new since: no write');
  t.equal(puts(), 1);
});

t.test('the object keeps the latest access per digest across flushes', async (t) => {
  const s = await storage(t);
  let now = 1_000;
  const tracker = new AccessTracker({ storage: s, replicaId: 'r1', log, now: () => now });
  tracker.record(D1);
  tracker.record(D2);
  await tracker.flush();
  now = 5_000;
  tracker.record(D1);
  await tracker.flush();
  t.same(Object.fromEntries((await stored(s, 'r1'))!), { [D1]: 5_000, [D2]: 1_000 });
});

t.test('a new process with the same replica id keeps what the previous one wrote', async (t) => {
  const s = await storage(t);
  const before = new AccessTracker({ storage: s, replicaId: 'r1', log, now: () => 1_000 });
  before.record(D1);
  await before.stop();
  const after = new AccessTracker({ storage: s, replicaId: 'r1', log, now: () => 2_000 });
  after.record(D2);
  await after.flush();
  t.same(Object.fromEntries((await stored(s, 'r1'))!), { [D1]: 1_000, [D2]: 2_000 });
});

t.test('replicas write separate objects; readAccessTimes takes the latest time of each digest', async (t) => {
  const s = await storage(t);
  const one = new AccessTracker({ storage: s, replicaId: 'one', log, now: () => 1_000 });
  const two = new AccessTracker({ storage: s, replicaId: 'two', log, now: () => 2_000 });
  one.record(D1);
  one.record(D2);
  two.record(D2);
  await Promise.all([one.flush(), two.flush()]);
  t.same(await s.listState(ACCESS_PREFIX), ['access/one', 'access/two']);
  const merged = await readAccessTimes(s);
  t.same(Object.fromEntries(merged.times), { [D1]: 1_000, [D2]: 2_000 });
});

t.test('the timer flushes every interval, and stop() flushes the rest', async (t) => {
  const s = await storage(t);
  const tracker = new AccessTracker({ storage: s, replicaId: 'r1', log, flushIntervalMs: 30 });
  tracker.start();
  tracker.record(D1);
  const deadline = Date.now() + 5_000;
  while (!(await stored(s, 'r1')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  t.ok((await stored(s, 'r1'))?.has(D1), 'written by the timer');
  tracker.record(D2);
  await tracker.stop();
  t.ok((await stored(s, 'r1'))?.has(D2), 'written by stop()');
});

t.test('a failed write is retried by the next flush', async (t) => {
  const s = await storage(t);
  const { storage: flaky, failNext } = countingPuts(s);
  const tracker = new AccessTracker({ storage: flaky, replicaId: 'r1', log });
  tracker.record(D1);
  failNext(1);
  await t.rejects(tracker.flush(), /injected/);
  t.equal(await tracker.flush(), true, 'the next flush writes');
  t.ok((await stored(s, 'r1'))?.has(D1), 'the access was not lost');
});

t.test('a cached blob served by the mirror is recorded and written at shutdown', async (t) => {
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  const digest = up.addBlob(randomBytesSeeded(10_000, 3));
  const root = await mkdtemp(join(tmpdir(), 'access-tracker-mirror-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const m = await startMirror({ upstreams: [{ namespace: up.host, host: up.host }], replicaId: 'mirror-a', root });
  let closed = false;
  t.teardown(() => (closed ? undefined : m.close()));
  const url = `${m.url}/v2/library/x/blobs/${digest}?ns=${up.host}`;
  t.equal(await fetch(url).then((r) => r.arrayBuffer().then(() => r.status)), 200, 'miss: filled');
  await m.settled();
  const hitAt = Date.now();
  t.equal(await fetch(url).then((r) => r.arrayBuffer().then(() => r.status)), 200, 'hit');
  t.ok((m.server.tracker.lastAccess(digest) ?? 0) >= hitAt, 'recorded in memory');
  t.equal(await m.storage.getState('access/mirror-a'), undefined, 'not written per request');
  await m.close();
  closed = true;
  t.ok(((await stored(new FilesystemStorage(root), 'mirror-a'))?.get(digest) ?? 0) >= hitAt, 'written when the server closed');
});

t.test('a blob whose download fails is not recorded', async (t) => {
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  const digest = up.addBlob(randomBytesSeeded(10_000, 4));
  up.setBlobFault(digest, { kind: 'wrong-digest' });
  const m = await startMirror({ upstreams: [{ namespace: up.host, host: up.host }], replicaId: 'mirror-b' });
  t.teardown(() => m.close());
  await fetch(`${m.url}/v2/library/x/blobs/${digest}?ns=${up.host}`)
    .then((r) => r.arrayBuffer())
    .catch(() => undefined);
  await m.server.mirror.drain();
  t.equal(m.server.tracker.lastAccess(digest), undefined);
});

t.test('the collector takes over the object of a replica that stopped writing, then deletes it', async (t) => {
  const s = await storage(t);
  const now = Date.now();
  await s.putState('access/gone', encodeAccess('gone', now - 2 * 86_400_000, new Map([[D1, now - 2 * 86_400_000]])));
  await s.putState('access/alive', encodeAccess('alive', now - 60_000, new Map([[D2, now - 60_000]])));
  for (const content of ['one', 'two', 'three']) await putBlob(s, Buffer.from(content));
  const tracker = new AccessTracker({ storage: s, replicaId: 'me', log });
  tracker.record(D3);
  await new Collector({ storage: s, log, tracker }).run();
  await tracker.flush();
  t.same(await s.listState(ACCESS_PREFIX), ['access/alive', 'access/me'], 'the stale object is gone, the live one stays');
  t.same([...(await stored(s, 'me'))!.keys()].sort(), [D1, D3].sort(), "its entries live on in this replica's object");
});

t.test('the collector makes the tracker forget digests that are no longer stored', async (t) => {
  const s = await storage(t);
  const kept = randomBytesSeeded(100, 5);
  await putBlob(s, kept);
  const tracker = new AccessTracker({ storage: s, replicaId: 'me', log });
  tracker.record(sha256(kept));
  tracker.record(D1); // not stored
  await new Collector({ storage: s, log, tracker }).run();
  await tracker.flush();
  t.same([...(await stored(s, 'me'))!.keys()], [sha256(kept)]);
});
