/**
 * Issue #15, membership from a DNS name: three mirror processes (one filesystem root each) find each
 * other through `--peers dns+http://NAME:PORT` answered by the in-test DNS server; a fourth replica is
 * added and one is removed while clients keep pulling from the others. Each herd of GETs of a new blob
 * over the replicas of the moment costs one upstream download, and no client request fails meanwhile.
 */
import t from 'tap';
import { requireBinaries } from './harness/binaries.js';
import { startMirrorCluster, type ClusterReplica, type MirrorCluster } from './harness/cluster.js';
import {
  assertAllVerified,
  bigBlob,
  blobGets,
  blobUrl,
  getAndHash,
  MiB,
  until,
  upstreamConfig,
  type Got,
} from './harness/cluster-scenarios.js';
import { pushBlob } from './harness/push.js';
import { startDockerRegistry, type DockerRegistry } from './harness/registry.js';

const REPO = 'dns/app';

function members(r: ClusterReplica): string[] | undefined {
  const line = r.process
    ?.logs()
    .filter((l) => l['msg'] === 'cluster membership')
    .pop();
  return line ? (line['members'] as string[]) : undefined;
}

async function everyoneSees(cluster: MirrorCluster, urls: string[]): Promise<boolean> {
  const want = [...urls].sort().join(',');
  return until(() => cluster.running().every((r) => (members(r) ?? []).join(',') === want), 25_000, 200);
}

async function herd(registry: DockerRegistry, replicas: ClusterReplica[], size: number): Promise<{ digest: string; got: Got[] }> {
  const blob = bigBlob(size);
  const digest = await pushBlob(registry, REPO, blob);
  const got = await Promise.all(
    Array.from({ length: 24 }, (_, i) =>
      getAndHash(blobUrl(replicas[i % replicas.length]!, registry, REPO, digest), replicas[i % replicas.length]!.index),
    ),
  );
  return { digest, got };
}

if (requireBinaries(t, ['docker-registry'])) {
  t.test('a replica added and one removed while serving', async (t) => {
    const registry = await startDockerRegistry();
    t.teardown(() => registry.stop());
    const cluster = await startMirrorCluster({ configYaml: upstreamConfig(registry), membership: 'dns', spare: 1 });
    t.teardown(() => cluster.close());
    const [a, b, c] = cluster.replicas as [ClusterReplica, ClusterReplica, ClusterReplica];
    t.ok(await everyoneSees(cluster, [a.url, b.url, c.url]), 'the three find each other by name');

    const size = 16 * MiB;
    const first = await herd(registry, [a, b, c], size);
    assertAllVerified(t, first.got, first.digest, size);
    t.equal(blobGets(registry, first.digest), 1, 'three replicas: one upstream download');

    // Clients keep pulling from the replicas that stay while the membership changes.
    let serving = true;
    const during: Got[] = [];
    const background = (async () => {
      for (let i = 0; serving; i++) {
        const r = [a, c][i % 2]!;
        during.push(await getAndHash(blobUrl(r, registry, REPO, first.digest), r.index));
      }
    })();

    const d = await cluster.add();
    t.ok(await everyoneSees(cluster, [a.url, b.url, c.url, d.url]), 'the added replica is seen by all, and sees all');
    const second = await herd(registry, [a, b, c, d], size);
    assertAllVerified(t, second.got, second.digest, size);
    t.equal(blobGets(registry, second.digest), 1, 'four replicas: one upstream download');

    await cluster.stop(b.index);
    t.ok(await everyoneSees(cluster, [a.url, c.url, d.url]), 'the removed replica is gone from every membership');
    const third = await herd(registry, [a, c, d], size);
    assertAllVerified(t, third.got, third.digest, size);
    t.equal(blobGets(registry, third.digest), 1, 'after the removal: one upstream download');

    serving = false;
    await background;
    t.ok(during.length > 0, `${during.length} pulls while the membership changed`);
    assertAllVerified(t, during, first.digest, size);
  });
}
