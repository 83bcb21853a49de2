/**
 * The cluster e2e suite of issue #15 for one storage mode, on one cluster of three mirror processes and
 * one docker-registry upstream (each test uses blobs and repositories of its own):
 *
 * - 24 concurrent GETs of one uncached blob (CLUSTER_BLOB_MIB, default 200 MiB) spread over the three:
 *   every response hashes to the digest, the upstream sent the blob once, and (S3) the bucket saw one upload;
 *   (filesystem) only the owner keeps it;
 * - 24 concurrent GETs of one uncached tag: one upstream manifest GET;
 * - a blob cached through one replica is served by each of the others with no upstream request;
 * - the owner killed with SIGKILL in the middle of a herd: every client of the other replicas gets the
 *   verified blob or a clean error (never a complete-looking wrong body), nothing partial is stored, and a
 *   retry succeeds.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import type { Test } from 'tap';
import type { S3TestServer } from '../../helpers/s3-server.js';
import { startMirrorCluster, type MirrorCluster } from './cluster.js';
import {
  assertAllVerified,
  bigBlob,
  blobGets,
  blobUrl,
  clusterKeys,
  getAndHash,
  manifestGets,
  MiB,
  OCI_ACCEPT,
  ownerOf,
  s3BlobKey,
  s3Inspector,
  storedBlobsFs,
  storedBlobsS3,
  tempFilesFs,
  until,
  upstreamConfig,
  upstreamRequestsSince,
  type Got,
} from './cluster-scenarios.js';
import { pushBlob, pushImage } from './push.js';
import { startDockerRegistry, type DockerRegistry } from './registry.js';

const HERD = 24;
const BLOB_MIB = Number(process.env['CLUSTER_BLOB_MIB'] ?? 200);

export function clusterSuite(t: Test, mode: { s3?: () => Promise<S3TestServer> }): void {
  let registry: DockerRegistry;
  let cluster: MirrorCluster;
  let s3: S3TestServer | undefined;
  let inspector: S3Client | undefined;
  const bucketBlobs = () => storedBlobsS3(s3!, inspector!);

  t.before(async () => {
    registry = await startDockerRegistry();
    s3 = mode.s3 ? await mode.s3() : undefined;
    inspector = s3 ? s3Inspector(s3) : undefined;
    cluster = await startMirrorCluster({ configYaml: upstreamConfig(registry), ...(s3 ? { s3 } : {}) });
  });
  t.teardown(async () => {
    await cluster?.close();
    await registry?.stop();
    inspector?.destroy();
  });

  /** Blobs stored anywhere that do not hash to their name, and in-progress files left behind. */
  const partialStored = async (): Promise<string[]> => {
    if (s3) return (await bucketBlobs()).filter((b) => !b.intact).map((b) => b.digest);
    const bad: string[] = [];
    for (const r of cluster.replicas) {
      bad.push(...(await storedBlobsFs(r.root)).filter((b) => !b.intact).map((b) => `${r.url} ${b.digest}`));
      if (r.process) bad.push(...(await tempFilesFs(r.root)).map((f) => `${r.url} tmp ${f}`));
    }
    return bad;
  };

  t.test(`${HERD} concurrent GETs of one uncached ${BLOB_MIB} MiB blob over three replicas`, async (t) => {
    const repo = 'herd/big';
    const blob = bigBlob(BLOB_MIB * MiB);
    const digest = await pushBlob(registry, repo, blob);
    const replicas = cluster.running();
    const t0 = Date.now();
    const got = await Promise.all(
      Array.from({ length: HERD }, (_, i) => getAndHash(blobUrl(replicas[i % 3]!, registry, repo, digest), i % 3)),
    );
    const wall = Date.now() - t0;
    t.comment(`herd of ${HERD} x ${BLOB_MIB} MiB: ${wall} ms wall, slowest client ${Math.max(...got.map((g) => g.ms))} ms`);
    assertAllVerified(t, got, digest, blob.length);
    t.equal(blobGets(registry, digest), 1, 'the upstream sent the blob once (1.0x its size)');
    const owner = ownerOf(cluster, clusterKeys.digest(digest));
    if (s3) {
      const key = s3BlobKey(digest);
      t.ok(
        await until(async () => (await bucketBlobs()).some((b) => b.digest === digest && b.intact), 30_000),
        'the bucket holds the blob',
      );
      t.equal(await s3.uploadsOf(key), 1, 'the bucket saw one upload of it');
    } else {
      t.ok(
        await until(async () => (await storedBlobsFs(owner.root)).some((b) => b.digest === digest && b.intact), 30_000),
        'its owner keeps it',
      );
      for (const r of replicas.filter((r) => r !== owner)) {
        t.notOk(
          (await storedBlobsFs(r.root)).some((b) => b.digest === digest),
          `${r.url} (not the owner) keeps no copy`,
        );
      }
    }
  });

  t.test(`${HERD} concurrent GETs of one uncached tag: one upstream manifest GET`, async (t) => {
    const repo = 'herd/tagged';
    const image = await pushImage(registry, repo, 'v1', bigBlob(64 * 1024));
    const replicas = cluster.running();
    const got = await Promise.all(
      Array.from({ length: HERD }, (_, i) =>
        getAndHash(`${replicas[i % 3]!.url}/v2/${repo}/manifests/v1?ns=${registry.host}`, i % 3, undefined, OCI_ACCEPT),
      ),
    );
    assertAllVerified(t, got, image.digest, image.bytes.length);
    t.equal(manifestGets(registry, repo), 1, 'one upstream manifest GET for the cluster', {
      upstream: upstreamRequestsSince(registry, 0, repo),
    });
  });

  t.test('a blob cached through one replica is served by each of the others with no upstream request', async (t) => {
    const repo = 'herd/once';
    const blob = bigBlob(8 * MiB);
    const digest = await pushBlob(registry, repo, blob);
    const [first, ...others] = cluster.running();
    const warm = await getAndHash(blobUrl(first!, registry, repo, digest), first!.index);
    assertAllVerified(t, [warm], digest, blob.length);
    t.equal(blobGets(registry, digest), 1);
    // Stored behind the response (the commit, the link): wait for it, as a later pull would.
    const owner = ownerOf(cluster, clusterKeys.digest(digest));
    if (s3)
      t.ok(
        await until(
          async () => (await s3!.uploadsOf(s3BlobKey(digest))) === 1 && (await bucketBlobs()).some((b) => b.digest === digest),
          30_000,
        ),
      );
    else t.ok(await until(async () => (await storedBlobsFs(owner.root)).some((b) => b.digest === digest), 30_000));
    await new Promise((r) => setTimeout(r, 500));
    const mark = registry.accessLog().length;
    for (const r of others) {
      const got = await getAndHash(blobUrl(r, registry, repo, digest), r.index);
      assertAllVerified(t, [got], digest, blob.length);
    }
    t.same(upstreamRequestsSince(registry, mark, repo), [], 'no upstream request');
  });

  t.test('the owner killed with SIGKILL in the middle of a herd', async (t) => {
    const repo = 'herd/killed';
    const size = Math.max(64, BLOB_MIB) * MiB;
    const blob = bigBlob(size);
    const digest = await pushBlob(registry, repo, blob);
    const owner = ownerOf(cluster, clusterKeys.digest(digest));
    const others = cluster.running().filter((r) => r !== owner);
    let killing: Promise<void> | undefined;
    // Killed as soon as a client of another replica has its first bytes: the owner is still sending then
    // (the replicas read from it far faster than 24 clients read from them).
    const onBytes = (n: number): void => {
      if (n > 0 && !killing) killing = cluster.kill(owner.index);
    };
    const got: Got[] = await Promise.all(
      Array.from({ length: HERD }, (_, i) => getAndHash(blobUrl(others[i % 2]!, registry, repo, digest), others[i % 2]!.index, onBytes)),
    );
    await killing;
    t.ok(killing, 'the owner was killed mid-herd');
    const complete = got.filter((g) => g.status === 200 && g.error === undefined);
    const failed = got.filter((g) => !(g.status === 200 && g.error === undefined));
    t.comment(
      `${complete.length} completed, ${failed.length} failed cleanly: ${[...new Set(failed.map((g) => `${g.status} ${g.error ?? ''}`))].join('; ')}`,
    );
    t.ok(failed.length > 0, 'the kill cut transfers that were relying on the owner');
    t.same(
      complete.filter((g) => g.digest !== digest || g.bytes !== size).map((g) => ({ replica: g.replica, bytes: g.bytes })),
      [],
      'every response that completed hashes to the digest',
    );
    // Let the survivors finish what they do (an upload of their own, S3's clean-up) before looking.
    await new Promise((r) => setTimeout(r, 1_000));
    t.same(await partialStored(), [], 'nothing partial is stored');
    const retry = await getAndHash(blobUrl(others[0]!, registry, repo, digest), others[0]!.index);
    assertAllVerified(t, [retry], digest, size);
    const retry2 = await getAndHash(blobUrl(others[1]!, registry, repo, digest), others[1]!.index);
    assertAllVerified(t, [retry2], digest, size);
    t.same(await partialStored(), [], 'still nothing partial stored');
    await cluster.start(owner.index);
  });
}
