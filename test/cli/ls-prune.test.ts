/**
 * The `ls` and `prune` admin commands, run as the built CLI (`node dist/cli/main.js filesystem --root
 * DIR ls|prune ...`) on a cache filled through the mirror: image `old` pulled by a mirror whose clock
 * runs 40 days behind (tag record, manifest and access times 40 days old, blob files back-dated),
 * image `new` pulled now.
 */
import { mkdtemp, rm, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { FilesystemStorage } from '../../src/storage/filesystem/filesystem-storage.js';
import { randomBytesSeeded, sha256 } from '../fixtures/content.js';
import { MEDIA_TYPES, startFixtureUpstream, type AddedImage, type FixtureUpstream } from '../fixtures/upstream.js';
import { startMirror, type TestMirror } from '../helpers/mirror.js';
import { runCli } from '../helpers/run-cli.js';

const REPO = 'library/app';
const DAY = 86_400_000;
const ACCEPT = `${MEDIA_TYPES.ociManifest}, ${MEDIA_TYPES.ociIndex}`;

interface Setup {
  up: FixtureUpstream;
  root: string;
  storage: FilesystemStorage;
  old: AddedImage;
  fresh: AddedImage;
}

async function pull(t: Test, m: TestMirror, up: FixtureUpstream, image: AddedImage, tag: string): Promise<void> {
  const res = await fetch(`${m.url}/v2/${REPO}/manifests/${tag}?ns=${up.host}`, { headers: { accept: ACCEPT } });
  t.equal(res.status, 200, `pulled manifest ${tag}`);
  await res.arrayBuffer();
  for (const d of [image.configDigest, ...image.layerDigests]) {
    const blob = await fetch(`${m.url}/v2/${REPO}/blobs/${d}?ns=${up.host}`);
    t.equal(sha256(Buffer.from(await blob.arrayBuffer())), d, `pulled blob of ${tag}`);
  }
  await m.server.mirror.drain();
}

async function setup(t: Test): Promise<Setup> {
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  const old = up.addImage(REPO, { tag: 'old', layers: [randomBytesSeeded(40_000, 1)] });
  const fresh = up.addImage(REPO, { tag: 'new', layers: [randomBytesSeeded(30_000, 2)] });
  const root = await mkdtemp(join(tmpdir(), 'ls-prune-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const storage = new FilesystemStorage(root);
  const upstreams = [{ namespace: up.host, host: up.host }];

  const past = await startMirror({ upstreams, root, replicaId: 'past', now: () => Date.now() - 40 * DAY });
  await pull(t, past, up, old, 'old');
  await past.close();
  const then = new Date(Date.now() - 40 * DAY);
  for (const d of [old.configDigest, ...old.layerDigests]) await utimes(storage.paths.blob(d), then, then);

  const present = await startMirror({ upstreams, root, replicaId: 'present' });
  await pull(t, present, up, fresh, 'new');
  await present.close();
  return { up, root, storage, old, fresh };
}

interface LsJson {
  repositories: Array<{
    namespace: string;
    repository: string;
    tags: Array<{
      tag: string;
      digest: string;
      size: number;
      manifestSize: number;
      blobs: Array<{ digest: string; size: number }>;
      missingBlobs: number;
      lastAccess: string | null;
      checkedAt: string;
    }>;
  }>;
  totals: { repositories: number; tags: number; blobs: number; blobBytes: number; manifests: number };
}

async function ls(t: Test, root: string, ...args: string[]): Promise<LsJson> {
  const r = await runCli(['--log-level', 'warn', 'filesystem', '--root', root, 'ls', '--json', ...args]);
  t.equal(r.code, 0, `ls exits 0 ${r.stderr}`);
  return JSON.parse(r.stdout) as LsJson;
}

async function prune(t: Test, root: string, ...args: string[]): Promise<string> {
  const r = await runCli(['--log-level', 'warn', 'filesystem', '--root', root, 'prune', '--older-than', '30d', ...args]);
  t.equal(r.code, 0, `prune exits 0 ${r.stderr}`);
  return r.stdout;
}

function blobsOf(image: AddedImage): string[] {
  return [image.configDigest, ...image.layerDigests];
}

async function cached(storage: FilesystemStorage, digests: string[]): Promise<boolean[]> {
  return Promise.all(digests.map(async (d) => (await storage.statBlob(d)) !== undefined));
}

t.test('ls --json lists each cached tag with its digest, size, blobs and last access', async (t) => {
  const { up, root, old, fresh } = await setup(t);
  const doc = await ls(t, root);
  t.equal(doc.repositories.length, 1);
  const repo = doc.repositories[0]!;
  t.same([repo.namespace, repo.repository], [up.host, REPO]);
  t.same(
    repo.tags.map((x) => x.tag),
    ['new', 'old'],
    'tags in lexical order',
  );
  for (const [tag, image] of [
    ['new', fresh],
    ['old', old],
  ] as const) {
    const entry = repo.tags.find((x) => x.tag === tag)!;
    t.equal(entry.digest, image.digest, `${tag}: digest`);
    t.equal(entry.manifestSize, image.bytes.length, `${tag}: manifest size`);
    t.same(entry.blobs.map((b) => b.digest).sort(), blobsOf(image).sort(), `${tag}: its cached blobs`);
    t.equal(entry.size, image.bytes.length + entry.blobs.reduce((s, b) => s + b.size, 0), `${tag}: size = manifest + cached blobs`);
    t.equal(entry.missingBlobs, 0, `${tag}: nothing missing`);
  }
  const oldEntry = repo.tags.find((x) => x.tag === 'old')!;
  t.ok(Date.now() - Date.parse(oldEntry.lastAccess ?? '') > 39 * DAY, 'old: last access 40 days ago');
  t.ok(Date.now() - Date.parse(repo.tags.find((x) => x.tag === 'new')!.lastAccess ?? '') < DAY, 'new: last access now');
  t.same([doc.totals.repositories, doc.totals.tags, doc.totals.blobs, doc.totals.manifests], [1, 2, 4, 2], 'totals');
});

t.test('ls prints a table without --json, and --namespace filters', async (t) => {
  const { up, root } = await setup(t);
  const table = await runCli(['--log-level', 'warn', 'filesystem', '--root', root, 'ls']);
  t.equal(table.code, 0);
  t.match(table.stdout, /^REPOSITORY\s+TAG\s+DIGEST\s+SIZE/);
  t.match(table.stdout, new RegExp(`${up.host}/${REPO}\\s+old\\s+sha256:`));
  t.match(table.stdout, /1 repository, 2 tags; the cache holds 4 blobs/);
  t.same((await ls(t, root, '--namespace', 'docker.io')).repositories, [], 'another namespace: nothing');
  t.equal((await ls(t, root, '--namespace', up.host)).repositories.length, 1, 'its own namespace: the repository');
});

t.test('prune --dry-run prints what it would delete and deletes nothing', async (t) => {
  const { root, storage, old, fresh } = await setup(t);
  const before = await ls(t, root);
  const out = await prune(t, root, '--dry-run');
  t.match(out, new RegExp(`would delete tag [^\\n]*/${REPO}:old`), 'the old tag');
  t.match(out, new RegExp(`would delete manifest ${old.digest}`), 'the old manifest');
  for (const d of blobsOf(old)) t.match(out, new RegExp(`would delete blob ${d}`), 'an old blob');
  t.notMatch(out, /:new\b/, 'not the new tag');
  t.notMatch(out, new RegExp(fresh.digest), 'nor its manifest');
  t.match(out, /would prune 1 tag, 1 manifest, 2 blobs \(.*\); dry run: nothing was deleted/);
  t.same(await ls(t, root), before, 'the cache is unchanged');
  t.same(await cached(storage, blobsOf(old)), [true, true], 'old blobs still there');
  t.ok(await storage.getManifest(old.digest), 'old manifest still there');
});

t.test('prune deletes the tag records, manifests and blobs unused for that long, and keeps the rest', async (t) => {
  const { up, root, storage, old, fresh } = await setup(t);
  const out = await prune(t, root);
  t.match(out, new RegExp(`deleted tag [^\\n]*/${REPO}:old`));
  t.match(out, /pruned 1 tag, 1 manifest, 2 blobs/);
  t.equal(await storage.getTag({ namespace: up.host, repository: REPO }, 'old'), undefined, 'old tag record gone');
  t.equal(await storage.getManifest(old.digest), undefined, 'old manifest gone');
  t.same(await cached(storage, blobsOf(old)), [false, false], 'old blobs gone');
  t.ok(await storage.getTag({ namespace: up.host, repository: REPO }, 'new'), 'new tag kept');
  t.ok(await storage.getManifest(fresh.digest), 'new manifest kept');
  t.same(await cached(storage, blobsOf(fresh)), [true, true], 'new blobs kept');
  t.same(
    (await ls(t, root)).repositories[0]?.tags.map((x) => x.tag),
    ['new'],
    'ls shows what is left',
  );
  t.match(await prune(t, root), /pruned 0 tags, 0 manifests, 0 blobs/, 'a second prune finds nothing');
});

t.test('prune while a server runs on the cache: the pruned image is pulled again from upstream', async (t) => {
  const { up, root, storage, old } = await setup(t);
  const m = await startMirror({ upstreams: [{ namespace: up.host, host: up.host }], root, replicaId: 'running' });
  t.teardown(() => m.close());
  await prune(t, root);
  const layer = old.layerDigests[0]!;
  const gets = up.blobGets(layer);
  await pull(t, m, up, old, 'old');
  t.equal(up.blobGets(layer), gets + 1, 'the layer came from upstream again');
  t.same(await cached(storage, blobsOf(old)), [true, true], 'and is cached again');
});

t.test('prune refuses an invalid --older-than', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'ls-prune-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const r = await runCli(['filesystem', '--root', root, 'prune', '--older-than', 'soon']);
  t.equal(r.code, 2);
  t.match(r.stderr, /--older-than/);
});
