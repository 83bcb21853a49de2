/**
 * The cluster harness (test/e2e/harness/cluster.ts) with the built mirror: three processes on
 * 127.0.0.1-3 find each other from a static --peers list, and from a DNS name (the in-test DNS server)
 * with a replica added and one removed while they run. Each recognises itself by its advertise URL.
 */
import t from 'tap';
import { startMirrorCluster, type ClusterReplica } from './harness/cluster.js';

function lastMembership(r: ClusterReplica): { members: string[]; selfListed: boolean } | undefined {
  const line = r.process
    ?.logs()
    .filter((l) => l['msg'] === 'cluster membership')
    .pop();
  return line ? { members: line['members'] as string[], selfListed: line['selfListed'] as boolean } : undefined;
}

async function eventually(check: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 200));
  }
  return true;
}

t.test('a static list: every replica sees all three and itself', async (t) => {
  const cluster = await startMirrorCluster({ replicas: 3 });
  t.teardown(() => cluster.close());
  const urls = cluster.replicas.map((r) => r.url);
  t.equal(cluster.peers, urls.join(','));
  for (const r of cluster.running()) {
    t.same(lastMembership(r), { members: urls, selfListed: true }, `${r.url}`);
    const metrics = await (await fetch(`${r.url}/metrics`)).text();
    t.match(metrics, /oci_registry_cluster_members 3/);
  }
});

t.test('a DNS name: a replica added and one removed while running', async (t) => {
  const cluster = await startMirrorCluster({ replicas: 3, membership: 'dns', spare: 1 });
  t.teardown(() => cluster.close());
  const [a, b, c] = cluster.replicas;
  const first = [a, b, c].map((r) => r?.url as string);
  for (const r of cluster.running()) {
    // Replicas that started before the others were published see them at the next 10 s round.
    t.ok(await eventually(() => lastMembership(r)?.members.length === 3, 15_000), `${r.url} sees three`);
    t.same(lastMembership(r), { members: first, selfListed: true });
  }
  const added = await cluster.add();
  t.equal(added.address, '127.0.0.4');
  for (const r of cluster.running())
    t.ok(await eventually(() => lastMembership(r)?.members.includes(added.url) === true, 15_000), `${r.url} sees the new replica`);

  await cluster.stop(1);
  for (const r of cluster.running()) {
    t.ok(
      await eventually(() => lastMembership(r)?.members.length === 3 && !lastMembership(r)?.members.includes(b?.url as string), 15_000),
      `${r.url} sees ${b?.url} gone`,
    );
  }
  t.ok((cluster.dns?.queries('mirror-peers.e2e.test') ?? 0) >= 8, 'resolved again and again');
});
