import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Test } from 'tap';
import { digestOf } from '../../src/oci/digest.js';
import type { BlobListing, RepositoryRef, Storage } from '../../src/storage/storage.js';
import { eventually } from '../helpers/eventually.js';

/**
 * The behaviour every Storage backend must show, one behaviour per subtest. Each subtest gets a
 * fresh, initialised storage from makeStorage and cleans it up afterwards.
 */
export interface ContractSubject {
  storage: Storage;
  cleanup: () => Promise<void>;
  /** Backends with multipart uploads: how many are pending (started, neither completed nor aborted). */
  pendingUploads?: () => Promise<number>;
}

export type MakeStorage = () => Promise<ContractSubject>;

const MIB = 1024 * 1024;
/** Backends under test use 5 MiB parts, so these sizes span one part, and several. */
const ONE_PART_PLUS = 6 * MIB;
const MULTI_PART = 12 * MIB + 123;

export function storageContract(t: Test, name: string, makeStorage: MakeStorage): Promise<unknown> {
  return t.test(`${name}: storage contract`, async (t) => {
    const behaviour = (title: string, fn: (t: Test, subject: ContractSubject) => Promise<void>) =>
      t.test(title, async (t) => {
        const subject = await makeStorage();
        try {
          await fn(t, subject);
        } finally {
          await subject.cleanup();
        }
      });

    await behaviour('a blob is invisible until commit', async (t, { storage }) => {
      const data = randomBytes(ONE_PART_PLUS);
      const digest = digestOf(data);
      const writer = await storage.createBlobWriter(digest);
      await writeAll(writer, data);
      t.equal(await storage.statBlob(digest), undefined, 'statBlob before commit');
      t.equal(await storage.readBlob(digest), undefined, 'readBlob before commit');
      t.same(await listDigests(storage), [], 'listBlobs before commit');
      await writer.commit();
      t.equal((await storage.statBlob(digest))?.size, data.length, 'visible after commit');
    });

    await behaviour('abort leaves nothing visible and no pending upload', async (t, { storage, pendingUploads }) => {
      const data = randomBytes(MULTI_PART);
      const digest = digestOf(data);
      const writer = await storage.createBlobWriter(digest);
      await writeAll(writer, data);
      if (pendingUploads) {
        t.ok(await eventually(async () => (await pendingUploads()) > 0), 'a multipart upload was under way before abort');
      }
      await writer.abort();
      t.equal(await storage.statBlob(digest), undefined, 'statBlob');
      t.equal(await storage.readBlob(digest), undefined, 'readBlob');
      t.same(await listDigests(storage), [], 'listBlobs');
      if (pendingUploads) t.equal(await pendingUploads(), 0, 'no multipart upload left behind');
      await writer.abort();
      t.pass('a second abort is harmless');
    });

    await behaviour('write and commit round-trip a small blob', async (t, { storage }) => {
      const data = randomBytes(1000);
      const digest = await putBlob(storage, data);
      t.equal(sha256(await readAll(await storage.readBlob(digest))), digest);
    });

    await behaviour('write and commit round-trip a multi-part blob', async (t, { storage }) => {
      const data = randomBytes(MULTI_PART);
      const digest = await putBlob(storage, data, 100_000);
      const back = await readAll(await storage.readBlob(digest));
      t.equal(back.length, data.length, 'size');
      t.equal(sha256(back), digest, 'hash');
    });

    await behaviour('an empty blob round-trips', async (t, { storage }) => {
      const digest = await putBlob(storage, Buffer.alloc(0));
      t.equal((await storage.statBlob(digest))?.size, 0, 'size 0');
      t.equal((await readAll(await storage.readBlob(digest))).length, 0, 'no bytes');
    });

    await behaviour('the caller may reuse its buffer once write resolves', async (t, { storage }) => {
      const expected = createHash('sha256');
      const chunk = Buffer.alloc(256 * 1024);
      const chunks: number[] = [];
      for (let i = 0; i < 30; i++) chunks.push(i);
      const fill = (i: number) => chunk.fill(i + 1);
      for (const i of chunks) expected.update(fill(i));
      const digest = `sha256:${expected.digest('hex')}`;
      const writer = await storage.createBlobWriter(digest);
      for (const i of chunks) await writer.write(fill(i));
      await writer.commit();
      t.equal(sha256(await readAll(await storage.readBlob(digest))), digest);
    });

    await behaviour('concurrent writers of the same digest both succeed', async (t, { storage }) => {
      const data = randomBytes(ONE_PART_PLUS);
      const digest = digestOf(data);
      const a = await storage.createBlobWriter(digest);
      const b = await storage.createBlobWriter(digest);
      const step = 64 * 1024;
      for (let offset = 0; offset < data.length; offset += step) {
        const part = data.subarray(offset, offset + step);
        await Promise.all([a.write(part), b.write(part)]);
      }
      await Promise.all([a.commit(), b.commit()]);
      t.equal(sha256(await readAll(await storage.readBlob(digest))), digest, 'content');
      t.same(await listDigests(storage), [digest], 'one blob');
    });

    await behaviour('readBlob with a range returns exactly those bytes', async (t, { storage }) => {
      const data = randomBytes(300_000);
      const digest = await putBlob(storage, data);
      const ranges: Array<[number, number]> = [
        [0, 0],
        [1, 10],
        [1000, 250_000],
        [data.length - 5, data.length - 1],
        [0, data.length - 1],
      ];
      for (const [start, end] of ranges) {
        const got = await readAll(await storage.readBlob(digest, { start, end }));
        t.ok(got.equals(data.subarray(start, end + 1)), `bytes ${start}-${end}`);
      }
    });

    await behaviour('statBlob reports the size', async (t, { storage }) => {
      const data = randomBytes(12_345);
      const digest = await putBlob(storage, data);
      const stat = await storage.statBlob(digest);
      t.equal(stat?.size, 12_345);
      t.ok(stat!.modified instanceof Date && !Number.isNaN(stat!.modified.getTime()), 'modified is a date');
    });

    await behaviour('listBlobs lists committed blobs only', async (t, { storage }) => {
      const one = randomBytes(100);
      const two = randomBytes(200);
      const d1 = await putBlob(storage, one);
      const d2 = await putBlob(storage, two);
      const aborted = randomBytes(300);
      const w3 = await storage.createBlobWriter(digestOf(aborted));
      await w3.write(aborted);
      await w3.abort();
      const open = randomBytes(400);
      const w4 = await storage.createBlobWriter(digestOf(open));
      await w4.write(open);
      try {
        const listed = await listAll(storage);
        t.same(
          listed.map((b) => [b.digest, b.size]).sort(),
          [
            [d1, 100],
            [d2, 200],
          ].sort(),
        );
        for (const b of listed) t.ok(b.modified instanceof Date, `${b.digest} has a modified date`);
      } finally {
        await w4.abort();
      }
    });

    await behaviour('deleteBlob removes a blob and leaves others', async (t, { storage }) => {
      const d1 = await putBlob(storage, randomBytes(100));
      const d2 = await putBlob(storage, randomBytes(100));
      await storage.deleteBlob(d1);
      t.equal(await storage.statBlob(d1), undefined, 'deleted');
      t.equal(await storage.readBlob(d1), undefined, 'not readable');
      t.same(await listDigests(storage), [d2], 'the other stays');
    });

    await behaviour('deleteBlob of an absent blob succeeds', async (t, { storage }) => {
      await storage.deleteBlob(digestOf(Buffer.from('never stored')));
      t.pass();
    });

    await behaviour('touchBlob advances modified', async (t, { storage }) => {
      const digest = await putBlob(storage, randomBytes(100));
      const before = (await storage.statBlob(digest))!.modified;
      await sleep(30);
      await storage.touchBlob(digest);
      const after = (await storage.statBlob(digest))!.modified;
      t.ok(after.getTime() > before.getTime(), `${after.toISOString()} > ${before.toISOString()}`);
      t.ok(Math.abs(after.getTime() - Date.now()) < 60_000, 'about now');
      t.equal((await storage.statBlob(digest))?.size, 100, 'size unchanged');
      t.equal(sha256(await readAll(await storage.readBlob(digest))), digest, 'content unchanged');
    });

    await behaviour('touchBlob of an absent blob does nothing', async (t, { storage }) => {
      const digest = digestOf(Buffer.from('absent'));
      await storage.touchBlob(digest);
      t.equal(await storage.statBlob(digest), undefined);
    });

    await behaviour('a manifest round-trips its exact bytes, media type and fetchedAt', async (t, { storage }) => {
      // Not canonical JSON: odd spacing, key order, unicode, no trailing newline; bytes must not be re-encoded.
      const bytes = Buffer.from(
        '{ "schemaVersion":2,\n\t"mediaType" : "application/vnd.oci.image.index.v1+json", "é":"\u2603" ,"manifests":[]}',
      );
      const digest = digestOf(bytes);
      const fetchedAt = new Date('2024-05-06T07:08:09.123Z');
      const mediaType = 'application/vnd.oci.image.index.v1+json';
      await storage.putManifest(digest, { mediaType, bytes, fetchedAt });
      const got = await storage.getManifest(digest);
      t.ok(got?.bytes.equals(bytes), 'bytes');
      t.equal(got?.mediaType, mediaType, 'media type');
      t.equal(got?.fetchedAt.toISOString(), fetchedAt.toISOString(), 'fetchedAt');
      const docker = Buffer.from('{"schemaVersion":2}');
      await storage.putManifest(digestOf(docker), {
        mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
        bytes: docker,
        fetchedAt,
      });
      t.equal(
        (await storage.getManifest(digestOf(docker)))?.mediaType,
        'application/vnd.docker.distribution.manifest.v2+json',
        'another media type',
      );
    });

    await behaviour('deleteManifest removes a manifest', async (t, { storage }) => {
      const bytes = Buffer.from('{"schemaVersion":2}');
      const digest = digestOf(bytes);
      await storage.putManifest(digest, { mediaType: 'application/vnd.oci.image.manifest.v1+json', bytes, fetchedAt: new Date() });
      await storage.deleteManifest(digest);
      t.equal(await storage.getManifest(digest), undefined);
      await storage.deleteManifest(digest);
      t.pass('deleting again is fine');
    });

    await behaviour('a tag round-trips and a put replaces it', async (t, { storage }) => {
      const repo: RepositoryRef = { namespace: 'docker.io', repository: 'library/nginx' };
      const first = {
        digest: digestOf(Buffer.from('a')),
        mediaType: 'application/vnd.oci.image.index.v1+json',
        size: 123,
        checkedAt: new Date('2024-01-02T03:04:05.678Z'),
      };
      await storage.putTag(repo, 'latest', first);
      t.same(await storage.getTag(repo, 'latest'), first, 'round trip');
      const second = { ...first, digest: digestOf(Buffer.from('b')), size: 456, checkedAt: new Date('2024-02-03T04:05:06.789Z') };
      await storage.putTag(repo, 'latest', second);
      t.same(await storage.getTag(repo, 'latest'), second, 'replaced');
    });

    await behaviour("listTags lists a repository's tags in lexical order", async (t, { storage }) => {
      const repo: RepositoryRef = { namespace: 'localhost:5000', repository: 'team/app' };
      const nested: RepositoryRef = { namespace: 'localhost:5000', repository: 'team/app/sub' };
      const parent: RepositoryRef = { namespace: 'localhost:5000', repository: 'team' };
      const other: RepositoryRef = { namespace: 'ghcr.io', repository: 'team/app' };
      const record = {
        digest: digestOf(Buffer.from('x')),
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        size: 1,
        checkedAt: new Date(),
      };
      const tags = ['v1.9', 'latest', 'v1.10', 'V2', '1.0', '_private', 'v1.9-alpine'];
      for (const tag of tags) await storage.putTag(repo, tag, record);
      await storage.putTag(nested, 'nested-only', record);
      await storage.putTag(parent, 'parent-only', record);
      await storage.putTag(other, 'other-only', record);
      t.same(await storage.listTags(repo), [...tags].sort(), 'lexical, own tags only');
      t.same(await storage.listTags(nested), ['nested-only'], 'nested repository');
      t.same(await storage.listTags(parent), ['parent-only'], 'parent repository');
      t.same(await storage.listTags({ namespace: 'quay.io', repository: 'none' }), [], 'unknown repository');
    });

    await behaviour('missing things are undefined', async (t, { storage }) => {
      const digest = digestOf(Buffer.from('missing'));
      const repo: RepositoryRef = { namespace: 'docker.io', repository: 'library/missing' };
      t.equal(await storage.statBlob(digest), undefined, 'statBlob');
      t.equal(await storage.readBlob(digest), undefined, 'readBlob');
      t.equal(await storage.readBlob(digest, { start: 0, end: 10 }), undefined, 'readBlob with a range');
      t.equal(await storage.getManifest(digest), undefined, 'getManifest');
      t.equal(await storage.getTag(repo, 'latest'), undefined, 'getTag');
      t.same(await storage.listTags(repo), [], 'listTags');
      t.same(await listDigests(storage), [], 'listBlobs');
    });

    await behaviour('hostile names and invalid digests are refused', async (t, { storage }) => {
      for (const [label, op] of hostileOperations(storage)) await t.rejects(op, label);
      t.same(await listDigests(storage), [], 'nothing was stored');
    });

    await behaviour('listRepositories lists every repository with a tag record, once each', async (t, { storage }) => {
      const record = {
        digest: digestOf(Buffer.from('x')),
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        size: 1,
        checkedAt: new Date(),
      };
      const repos: RepositoryRef[] = [
        { namespace: 'docker.io', repository: 'library/nginx' },
        { namespace: 'docker.io', repository: 'library/nginx/sub' },
        { namespace: 'docker.io', repository: 'library' },
        { namespace: 'ghcr.io', repository: 'team/app' },
        { namespace: 'localhost:5000', repository: 'app' },
      ];
      for (const repo of repos) {
        await storage.putTag(repo, 'a', record);
        await storage.putTag(repo, 'b', record);
      }
      t.same(sortRepos(await listRepos(storage)), sortRepos(repos));
    });

    await behaviour('listRepositories is empty for an empty cache', async (t, { storage }) => {
      t.same(await listRepos(storage), []);
    });

    await behaviour('deleteTag removes one tag and leaves the others', async (t, { storage }) => {
      const repo: RepositoryRef = { namespace: 'docker.io', repository: 'library/nginx' };
      const record = {
        digest: digestOf(Buffer.from('x')),
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        size: 1,
        checkedAt: new Date(),
      };
      await storage.putTag(repo, 'a', record);
      await storage.putTag(repo, 'b', record);
      await storage.deleteTag(repo, 'a');
      t.equal(await storage.getTag(repo, 'a'), undefined, 'deleted');
      t.same(await storage.listTags(repo), ['b'], 'the other stays');
      await storage.deleteTag(repo, 'a');
      await storage.deleteTag({ namespace: 'quay.io', repository: 'never/seen' }, 'x');
      t.pass('deleting an absent tag is fine');
    });

    await behaviour('a repository whose last tag is deleted is no longer listed, and can get tags again', async (t, { storage }) => {
      const record = {
        digest: digestOf(Buffer.from('x')),
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        size: 1,
        checkedAt: new Date(),
      };
      const gone: RepositoryRef = { namespace: 'docker.io', repository: 'team/gone' };
      const kept: RepositoryRef = { namespace: 'docker.io', repository: 'team/gone/child' };
      await storage.putTag(gone, 'only', record);
      await storage.putTag(kept, 'v1', record);
      await storage.deleteTag(gone, 'only');
      t.same(await listRepos(storage), [kept], 'only the repository that still has a tag');
      t.same(await storage.listTags(kept), ['v1'], 'a nested repository keeps its tags');
      await storage.putTag(gone, 'again', record);
      t.same(await storage.listTags(gone), ['again'], 'tags can be written again');
    });

    await behaviour('listManifests lists stored manifests with size and fetchedAt', async (t, { storage }) => {
      const a = Buffer.from('{"schemaVersion":2,"a":1}');
      const b = Buffer.from('{"schemaVersion":2,"b":22}');
      const before = Date.now() - 1000;
      for (const bytes of [a, b]) {
        await storage.putManifest(digestOf(bytes), {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          bytes,
          fetchedAt: new Date(),
        });
      }
      const listed: Array<{ digest: string; size: number; fetchedAt: Date }> = [];
      for await (const m of storage.listManifests()) listed.push(m);
      t.same(
        listed.map((m) => [m.digest, m.size]).sort(),
        [
          [digestOf(a), a.length],
          [digestOf(b), b.length],
        ].sort(),
      );
      for (const m of listed)
        t.ok(m.fetchedAt.getTime() >= before && m.fetchedAt.getTime() <= Date.now() + 60_000, `${m.digest} fetchedAt is about now`);
      await storage.deleteManifest(digestOf(a));
      const after: string[] = [];
      for await (const m of storage.listManifests()) after.push(m.digest);
      t.same(after, [digestOf(b)], 'a deleted manifest is not listed');
    });

    await behaviour('a state object round-trips, is replaced by a put, and is deleted', async (t, { storage }) => {
      t.equal(await storage.getState('access/replica-1'), undefined, 'absent at first');
      await storage.putState('access/replica-1', Buffer.from('one'));
      t.equal((await storage.getState('access/replica-1'))?.toString(), 'one', 'round trip');
      await storage.putState('access/replica-1', Buffer.from('two'));
      t.equal((await storage.getState('access/replica-1'))?.toString(), 'two', 'replaced');
      await storage.deleteState('access/replica-1');
      t.equal(await storage.getState('access/replica-1'), undefined, 'deleted');
      await storage.deleteState('access/replica-1');
      t.pass('deleting again is fine');
      t.same(await listDigests(storage), [], 'state objects are not blobs');
      t.same(await listRepos(storage), [], 'nor repositories');
    });

    await behaviour('listState lists names under a prefix in lexical order', async (t, { storage }) => {
      for (const name of ['access/b.host-2', 'access/a.host-1', 'access/nested/x', 'other', 'accessory/y']) {
        await storage.putState(name, Buffer.from(name));
      }
      t.same(await storage.listState('access/'), ['access/a.host-1', 'access/b.host-2', 'access/nested/x'], 'under access/');
      t.same(
        await storage.listState('access'),
        ['access/a.host-1', 'access/b.host-2', 'access/nested/x', 'accessory/y'],
        'a plain string prefix',
      );
      t.same(await storage.listState(''), ['access/a.host-1', 'access/b.host-2', 'access/nested/x', 'accessory/y', 'other'], 'everything');
      t.same(await storage.listState('none/'), [], 'nothing under an unknown prefix');
    });

    await behaviour('a link round-trips with its time, per repository and per kind', async (t, { storage }) => {
      const repo: RepositoryRef = { namespace: 'docker.io', repository: 'library/nginx' };
      const digest = digestOf(Buffer.from('linked'));
      const at = new Date('2024-05-06T07:08:09.123Z');
      t.equal(await storage.getLink(repo, 'blob', digest), undefined, 'absent at first');
      await storage.putLink(repo, 'blob', digest, at);
      t.equal((await storage.getLink(repo, 'blob', digest))?.toISOString(), at.toISOString(), 'round trip, to the millisecond');
      t.equal(await storage.getLink(repo, 'manifest', digest), undefined, 'a blob link is not a manifest link');
      t.equal(
        await storage.getLink({ namespace: 'docker.io', repository: 'library/other' }, 'blob', digest),
        undefined,
        'nor a link of another repository',
      );
      t.equal(
        await storage.getLink({ namespace: 'ghcr.io', repository: 'library/nginx' }, 'blob', digest),
        undefined,
        'nor of another namespace',
      );
      t.equal(
        await storage.getLink({ namespace: 'docker.io', repository: 'library' }, 'blob', digest),
        undefined,
        'nor of a parent repository',
      );
      t.equal(
        await storage.getLink({ namespace: 'docker.io', repository: 'library/nginx/child' }, 'blob', digest),
        undefined,
        'nor of a child repository',
      );
      const later = new Date('2024-06-01T00:00:00.000Z');
      await storage.putLink(repo, 'blob', digest, later);
      t.equal((await storage.getLink(repo, 'blob', digest))?.toISOString(), later.toISOString(), 'a put re-times it');
    });

    await behaviour('deleteLink removes one link and never the content or the other links', async (t, { storage }) => {
      const a: RepositoryRef = { namespace: 'docker.io', repository: 'team/a' };
      const b: RepositoryRef = { namespace: 'quay.io', repository: 'team/a' };
      const data = Buffer.from('shared bytes');
      const digest = await putBlob(storage, data);
      const manifest = Buffer.from('{"schemaVersion":2}');
      await storage.putManifest(digestOf(manifest), {
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        bytes: manifest,
        fetchedAt: new Date(),
      });
      for (const repo of [a, b]) {
        await storage.putLink(repo, 'blob', digest, new Date());
        await storage.putLink(repo, 'manifest', digestOf(manifest), new Date());
      }
      await storage.deleteLink(a, 'blob', digest);
      await storage.deleteLink(a, 'manifest', digestOf(manifest));
      t.equal(await storage.getLink(a, 'blob', digest), undefined, 'the blob link is gone');
      t.equal(await storage.getLink(a, 'manifest', digestOf(manifest)), undefined, 'the manifest link is gone');
      t.ok(await storage.getLink(b, 'blob', digest), 'the other namespace keeps its blob link');
      t.ok(await storage.getLink(b, 'manifest', digestOf(manifest)), 'and its manifest link');
      t.same(await readAll(await storage.readBlob(digest)), data, 'the blob stays');
      t.ok(await storage.getManifest(digestOf(manifest)), 'the manifest stays');
      await storage.deleteLink(a, 'blob', digest);
      await storage.deleteLink({ namespace: 'gcr.io', repository: 'never/seen' }, 'manifest', digest);
      t.pass('deleting an absent link is fine');
    });

    await behaviour('a link to absent content is kept and read back (the proxy treats it as a miss)', async (t, { storage }) => {
      const repo: RepositoryRef = { namespace: 'docker.io', repository: 'library/nginx' };
      const data = Buffer.from('evicted later');
      const digest = await putBlob(storage, data);
      await storage.putLink(repo, 'blob', digest, new Date());
      await storage.deleteBlob(digest);
      t.equal(await storage.statBlob(digest), undefined, 'content gone');
      t.ok(await storage.getLink(repo, 'blob', digest), 'the link is still there');
    });

    await behaviour('links are neither repositories, tags, blobs nor manifests', async (t, { storage }) => {
      const repo: RepositoryRef = { namespace: 'docker.io', repository: 'library/nginx' };
      const digest = digestOf(Buffer.from('x'));
      await storage.putLink(repo, 'blob', digest, new Date());
      await storage.putLink(repo, 'manifest', digest, new Date());
      t.same(await listRepos(storage), [], 'a repository with links only is not listed');
      t.same(await storage.listTags(repo), [], 'no tags');
      t.same(await listDigests(storage), [], 'no blobs');
      const manifests: string[] = [];
      for await (const m of storage.listManifests()) manifests.push(m.digest);
      t.same(manifests, [], 'no manifests');
      await storage.putTag(repo, 'latest', {
        digest,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        size: 1,
        checkedAt: new Date(),
      });
      t.same(await listRepos(storage), [repo], 'with a tag it is listed, once');
      t.same(await storage.listTags(repo), ['latest'], 'its tags are its tags');
      await storage.deleteTag(repo, 'latest');
      t.same(await listRepos(storage), [], 'its last tag deleted: no longer listed');
      t.ok(await storage.getLink(repo, 'blob', digest), 'while its links stay');
    });

    await behaviour('checkWritable succeeds', async (t, { storage }) => {
      await storage.checkWritable();
      t.same(await listDigests(storage), [], 'leaves no blob behind');
    });
  });
}

const HOSTILE_REPOSITORIES: RepositoryRef[] = [
  { namespace: '..', repository: 'x' },
  { namespace: '.', repository: 'x' },
  { namespace: 'a/b', repository: 'x' },
  { namespace: '', repository: 'x' },
  { namespace: 'docker.io', repository: '../../../escape' },
  { namespace: 'docker.io', repository: 'library/..' },
  { namespace: 'docker.io', repository: 'a//b' },
  { namespace: 'docker.io', repository: 'a\\..\\..' },
];
/** Names that would reach another repository's records (`_links`, `_tags`) if taken as components. */
const LINK_HOSTILE_REPOSITORIES: RepositoryRef[] = [
  { namespace: 'docker.io', repository: '_links' },
  { namespace: 'docker.io', repository: 'library/nginx/_links/blobs' },
  { namespace: 'docker.io', repository: 'library/_tags' },
];
const HOSTILE_TAGS = ['..', '.', 'a/b', '../../escape', '', 'x\0y'];
const HOSTILE_STATE_NAMES = ['', '..', '.', '../x', 'access/..', 'access/../../x', '/abs', 'a//b', 'a/', 'Upper', 'a\\b', 'x\0y', 'sp ace'];
const INVALID_DIGESTS = ['sha256:../../x', `sha256:${'0'.repeat(63)}`, 'md5:abc', '../blobs', `sha256:${'A'.repeat(64)}`];

/**
 * Operations that name something outside the backend's key space, each as a function (so that a
 * synchronous throw counts as a refusal too). Callers validate names first; storage is the second fence.
 */
export function hostileOperations(storage: Storage): Array<[string, () => Promise<unknown>]> {
  const record = {
    digest: digestOf(Buffer.from('x')),
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    size: 1,
    checkedAt: new Date(),
  };
  const fine: RepositoryRef = { namespace: 'docker.io', repository: 'library/nginx' };
  const ops: Array<[string, () => Promise<unknown>]> = [];
  for (const repo of HOSTILE_REPOSITORIES) {
    const label = JSON.stringify(repo);
    ops.push([`putTag ${label}`, async () => storage.putTag(repo, 'latest', record)]);
    ops.push([`getTag ${label}`, async () => storage.getTag(repo, 'latest')]);
    ops.push([`listTags ${label}`, async () => storage.listTags(repo)]);
  }
  for (const tag of HOSTILE_TAGS) {
    ops.push([`putTag tag ${JSON.stringify(tag)}`, async () => storage.putTag(fine, tag, record)]);
    ops.push([`getTag tag ${JSON.stringify(tag)}`, async () => storage.getTag(fine, tag)]);
    ops.push([`deleteTag tag ${JSON.stringify(tag)}`, async () => storage.deleteTag(fine, tag)]);
  }
  for (const repo of HOSTILE_REPOSITORIES) {
    ops.push([`deleteTag ${JSON.stringify(repo)}`, async () => storage.deleteTag(repo, 'latest')]);
  }
  for (const name of HOSTILE_STATE_NAMES) {
    const label = JSON.stringify(name);
    ops.push([`getState ${label}`, async () => storage.getState(name)]);
    ops.push([`putState ${label}`, async () => storage.putState(name, Buffer.from('x'))]);
    ops.push([`deleteState ${label}`, async () => storage.deleteState(name)]);
  }
  for (const prefix of ['../', '..', '/', 'a//', 'A/', 'x\0']) {
    ops.push([`listState ${JSON.stringify(prefix)}`, async () => storage.listState(prefix)]);
  }
  for (const repo of [...HOSTILE_REPOSITORIES, ...LINK_HOSTILE_REPOSITORIES]) {
    const label = JSON.stringify(repo);
    ops.push([`getLink ${label}`, async () => storage.getLink(repo, 'blob', record.digest)]);
    ops.push([`putLink ${label}`, async () => storage.putLink(repo, 'manifest', record.digest, new Date())]);
    ops.push([`deleteLink ${label}`, async () => storage.deleteLink(repo, 'blob', record.digest)]);
  }
  for (const digest of INVALID_DIGESTS) {
    ops.push([`getLink ${digest}`, async () => storage.getLink(fine, 'blob', digest)]);
    ops.push([`putLink ${digest}`, async () => storage.putLink(fine, 'blob', digest, new Date())]);
    ops.push([`deleteLink ${digest}`, async () => storage.deleteLink(fine, 'manifest', digest)]);
    ops.push([`statBlob ${digest}`, async () => storage.statBlob(digest)]);
    ops.push([`readBlob ${digest}`, async () => storage.readBlob(digest)]);
    ops.push([`createBlobWriter ${digest}`, async () => storage.createBlobWriter(digest)]);
    ops.push([`getManifest ${digest}`, async () => storage.getManifest(digest)]);
    ops.push([
      `putManifest ${digest}`,
      async () => storage.putManifest(digest, { mediaType: 'x', bytes: Buffer.from('{}'), fetchedAt: new Date() }),
    ]);
  }
  return ops;
}

export async function writeAll(writer: { write(chunk: Buffer): Promise<void> }, data: Buffer, step = 64 * 1024): Promise<void> {
  for (let offset = 0; offset < data.length; offset += step) await writer.write(data.subarray(offset, offset + step));
}

export async function putBlob(storage: Storage, data: Buffer, step?: number): Promise<string> {
  const digest = digestOf(data);
  const writer = await storage.createBlobWriter(digest);
  await writeAll(writer, data, step);
  await writer.commit();
  return digest;
}

export async function readAll(stream: Readable | undefined): Promise<Buffer> {
  if (!stream) throw new Error('expected a stream, got undefined');
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export async function listAll(storage: Storage): Promise<BlobListing[]> {
  const all: BlobListing[] = [];
  for await (const b of storage.listBlobs()) all.push(b);
  return all;
}

export async function listRepos(storage: Storage): Promise<RepositoryRef[]> {
  const all: RepositoryRef[] = [];
  for await (const r of storage.listRepositories()) all.push(r);
  return all;
}

function sortRepos(repos: RepositoryRef[]): RepositoryRef[] {
  const key = (r: RepositoryRef) => `${r.namespace}\0${r.repository}`;
  return [...repos].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

export async function listDigests(storage: Storage): Promise<string[]> {
  return (await listAll(storage)).map((b) => b.digest).sort();
}

export function sha256(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
