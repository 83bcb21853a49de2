/**
 * What is stored runs behind what is served: a client's last byte waits for the digest check, not for
 * the commit (fdatasync + rename), and a manifest is answered from memory while its synced writes run.
 * Until the writes land, the mirror behaves as if they had: new requests join the download, and the
 * tag list and catalog wait for pending tag records.
 */
import t, { type Test } from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytesSeeded, sha256 } from '../fixtures/content.js';
import { startFixtureUpstream, type FixtureUpstream } from '../fixtures/upstream.js';
import { startMirror, type TestMirror } from '../helpers/mirror.js';
import { eventually } from '../helpers/eventually.js';
import { FilesystemStorage } from '../../src/storage/filesystem/filesystem-storage.js';
import type { BlobWriter, Storage } from '../../src/storage/storage.js';

const OCI_ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json';

/** A gate the test opens; the storage's writes wait at it. */
class Gate {
  private open!: () => void;
  readonly opened = new Promise<void>((r) => (this.open = r));
  waiting = 0;
  release(): void {
    this.open();
  }
  async pass(): Promise<void> {
    this.waiting++;
    await this.opened;
  }
}

/** A filesystem storage whose blob commits and manifest/tag writes wait at a gate; `failWritesAfterMs` makes every spool write fail that late. */
function gatedStorage(root: string, gate: Gate, failWritesAfterMs?: number): Storage {
  const fs = new FilesystemStorage(root);
  return new Proxy(fs, {
    get(target, prop, receiver) {
      if (prop === 'createBlobWriter') {
        return async (digest: string): Promise<BlobWriter> => {
          const w = await target.createBlobWriter(digest);
          return {
            localPath: w.localPath,
            write: (c) => w.write(c),
            writev: async (cs) => {
              if (failWritesAfterMs === undefined) return w.writev!(cs);
              await new Promise((r) => setTimeout(r, failWritesAfterMs));
              throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
            },
            commit: async () => {
              await gate.pass();
              await w.commit();
            },
            abort: () => w.abort(),
          };
        };
      }
      if (prop === 'putManifest' || prop === 'putTag') {
        return async (...args: unknown[]) => {
          await gate.pass();
          return (target[prop] as (...a: unknown[]) => Promise<void>).apply(target, args);
        };
      }
      const value: unknown = Reflect.get(target, prop, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

async function setup(t: Test, failWritesAfterMs?: number): Promise<{ up: FixtureUpstream; m: TestMirror; gate: Gate }> {
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  const root = await mkdtemp(join(tmpdir(), 'write-behind-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const gate = new Gate();
  const m = await startMirror({
    upstreams: [{ namespace: 'fixture.test', host: up.host }],
    defaultNamespace: 'fixture.test',
    root,
    storage: gatedStorage(root, gate, failWritesAfterMs),
  });
  t.teardown(async () => {
    gate.release();
    await m.close();
  });
  return { up, m, gate };
}

t.test('a blob download completes for its client before the storage commit does', async (t) => {
  const { up, m, gate } = await setup(t);
  const bytes = randomBytesSeeded(3 * 1024 * 1024, 21);
  const digest = up.addBlob(bytes);
  const res = await fetch(`${m.url}/v2/org/app/blobs/${digest}`, { signal: AbortSignal.timeout(10_000) });
  t.equal(res.status, 200);
  t.equal(sha256(Buffer.from(await res.arrayBuffer())), digest, 'complete and verified');
  await eventually(() => gate.waiting > 0);
  t.equal(gate.waiting, 1, 'the commit is waiting');
  t.equal(await m.storage.statBlob(digest), undefined, 'not yet visible in storage');

  const again = await fetch(`${m.url}/v2/org/app/blobs/${digest}`);
  t.equal(sha256(Buffer.from(await again.arrayBuffer())), digest, 'a request meanwhile gets the bytes');
  t.equal(up.blobGets(digest), 1, 'from the same download, not a second one');

  gate.release();
  await m.settled();
  t.ok(await m.storage.statBlob(digest), 'stored once the commit ran');
});

t.test('a manifest is answered before its synced writes; the tag list and catalog wait for them', async (t) => {
  const { up, m, gate } = await setup(t);
  const img = up.addImage('org/app', { tag: 'v1' });
  const res = await fetch(`${m.url}/v2/org/app/manifests/v1`, { headers: { accept: OCI_ACCEPT }, signal: AbortSignal.timeout(10_000) });
  t.equal(res.status, 200, 'answered while the writes wait');
  t.same(Buffer.from(await res.arrayBuffer()), img.bytes);
  await eventually(() => gate.waiting > 0);
  t.equal(await m.storage.getManifest(img.digest), undefined, 'not yet in storage');

  const again = await fetch(`${m.url}/v2/org/app/manifests/v1`, { headers: { accept: OCI_ACCEPT } });
  t.equal(again.status, 200);
  t.equal(again.headers.get('docker-content-digest'), img.digest, 'served from memory meanwhile');
  t.equal(up.countRequests({ pathIncludes: '/manifests/' }), 1, 'without asking upstream again');

  let catalogAnswered = false;
  const catalog = fetch(`${m.url}/v2/_catalog`).then(async (r) => {
    catalogAnswered = true;
    return (await r.json()) as { repositories: string[] };
  });
  await new Promise((r) => setTimeout(r, 100));
  t.notOk(catalogAnswered, 'the catalog waits for the pending tag record');
  gate.release();
  t.same((await catalog).repositories, ['org/app'], 'and then lists the pull');
  await m.settled();
  t.ok(await m.storage.getManifest(img.digest), 'the manifest is stored');
  t.ok(await m.storage.getTag({ namespace: 'fixture.test', repository: 'org/app' }, 'v1'), 'the tag record is stored');
});

t.test("a spool write that fails after the digest matched loses the caching, not the client's bytes", async (t) => {
  // The writes fail 200 ms late: the whole body has arrived and verified by then.
  const { up, m, gate } = await setup(t, 200);
  const bytes = randomBytesSeeded(300_000, 22);
  const digest = up.addBlob(bytes);
  const res = await fetch(`${m.url}/v2/org/app/blobs/${digest}`, { signal: AbortSignal.timeout(10_000) });
  t.equal(res.status, 200);
  t.equal(sha256(Buffer.from(await res.arrayBuffer())), digest, 'the client gets every byte, verified');
  await m.settled();
  t.equal(gate.waiting, 0, 'no commit was attempted');
  t.equal(await m.storage.statBlob(digest), undefined, 'nothing stored');
  const again = await fetch(`${m.url}/v2/org/app/blobs/${digest}`);
  t.equal(sha256(Buffer.from(await again.arrayBuffer())), digest, 'the next request is served from upstream');
  t.equal(up.blobGets(digest), 2);
});
