/**
 * Membership (src/cluster/membership.ts): the static list, a DNS name re-resolved on a timer (a replica
 * added and one removed while running, a failed lookup, an empty answer), self recognised by the
 * advertise URL, and peers marked down owning nothing until their back-off ends.
 */
import t from 'tap';
import { Membership } from '../../src/cluster/membership.js';
import { parsePeerSource } from '../../src/cluster/peer-address.js';
import { PeerHealth } from '../../src/cluster/peer-health.js';
import { clusterKeys, rendezvousOwner } from '../../src/cluster/rendezvous.js';

const keys = Array.from({ length: 300 }, (_, i) => clusterKeys.digest(`sha256:${i.toString(16).padStart(64, '0')}`));

t.test('a static list: sorted, self recognised, every key owned by one member', async (t) => {
  const sizes: number[] = [];
  const m = new Membership({
    source: parsePeerSource('http://10.0.0.6:8080, http://10.0.0.5:8080,http://10.0.0.7:8080/'),
    self: 'http://10.0.0.5:8080',
    observer: { membershipChanged: (n) => sizes.push(n) },
  });
  t.same(m.members(), ['http://10.0.0.5:8080', 'http://10.0.0.6:8080', 'http://10.0.0.7:8080']);
  t.same(sizes, [3], 'the size is reported once');
  const owners = new Map<string, number>();
  for (const k of keys) {
    const o = m.ownerOf(k);
    t.ok(o, 'owned');
    if (!o) continue;
    t.equal(o.self, o.peer === 'http://10.0.0.5:8080');
    owners.set(o.peer, (owners.get(o.peer) ?? 0) + 1);
  }
  t.equal(owners.size, 3, 'every member owns some keys');
  await m.start();
  m.stop();
});

t.test('a DNS name: re-resolved on a timer, a replica added and one removed while running', async (t) => {
  let answer = ['10.1.0.1', '10.1.0.2'];
  const asked: string[] = [];
  const sizes: number[] = [];
  const m = new Membership({
    source: parsePeerSource('dns+http://mirror-peers.ns.svc.cluster.local:8080'),
    self: 'http://10.1.0.1:8080',
    lookup: async (name) => {
      asked.push(name);
      return answer;
    },
    refreshMs: 20,
    observer: { membershipChanged: (n) => sizes.push(n) },
  });
  t.same(m.members(), [], 'nothing before the first lookup');
  await m.start();
  t.teardown(() => m.stop());
  t.equal(asked[0], 'mirror-peers.ns.svc.cluster.local');
  t.same(m.members(), ['http://10.1.0.1:8080', 'http://10.1.0.2:8080']);
  const before = new Map(keys.map((k) => [k, m.ownerOf(k)?.peer]));

  answer = ['10.1.0.3', '10.1.0.1', '10.1.0.2'];
  await waitFor(() => m.members().length === 3);
  let moved = 0;
  for (const k of keys) {
    const now = m.ownerOf(k)?.peer;
    if (now !== before.get(k)) {
      moved++;
      t.equal(now, 'http://10.1.0.3:8080', 'a key moves only to the replica that came');
    }
  }
  t.ok(moved > 50 && moved < 150, `about a third of the keys moved (${moved} of ${keys.length})`);

  const withThree = new Map(keys.map((k) => [k, m.ownerOf(k)?.peer]));
  answer = ['10.1.0.1', '10.1.0.3'];
  await waitFor(() => m.members().length === 2);
  t.same(m.members(), ['http://10.1.0.1:8080', 'http://10.1.0.3:8080']);
  for (const k of keys) {
    const was = withThree.get(k);
    if (was !== 'http://10.1.0.2:8080') t.equal(m.ownerOf(k)?.peer, was, 'only the keys of the replica that went move');
  }
  t.same(sizes, [2, 3, 2], 'the gauge follows every change, once per change');
});

t.test('a failed lookup keeps the last members; an empty answer empties them', async (t) => {
  let mode: 'ok' | 'fail' | 'empty' = 'ok';
  const m = new Membership({
    source: parsePeerSource('dns+http://peers:9000'),
    self: 'http://10.2.0.1:9000',
    lookup: async () => {
      if (mode === 'fail') throw Object.assign(new Error('queryA ETIMEOUT peers'), { code: 'ETIMEOUT' });
      return mode === 'ok' ? ['10.2.0.1', 'fd00::2'] : [];
    },
  });
  await m.refresh();
  t.same(m.members(), ['http://10.2.0.1:9000', 'http://[fd00::2]:9000'], 'AAAA records become bracketed URLs');
  mode = 'fail';
  await m.refresh();
  t.same(m.members(), ['http://10.2.0.1:9000', 'http://[fd00::2]:9000'], 'kept through a resolver outage');
  mode = 'empty';
  await m.refresh();
  t.same(m.members(), []);
  t.equal(m.ownerOf('sha256:abc'), undefined, 'no members: nothing is owned, the replica serves alone');
});

t.test('the first lookup holds start() at most 3 s, and a replica not yet listed owns nothing', async (t) => {
  let release: (a: string[]) => void = () => undefined;
  const m = new Membership({
    source: parsePeerSource('dns+http://peers:9000'),
    self: 'http://10.3.0.9:9000',
    lookup: () => new Promise((r) => (release = r)),
  });
  const started = Date.now();
  await m.start();
  t.teardown(() => m.stop());
  const waited = Date.now() - started;
  t.ok(waited >= 2900 && waited < 4500, `start() gave up waiting after ${waited} ms`);
  release(['10.3.0.1', '10.3.0.2']);
  await waitFor(() => m.members().length === 2);
  for (const k of keys.slice(0, 50)) t.equal(m.ownerOf(k)?.self, false, 'self is not listed yet: every key has another owner');
});

t.test('a peer marked down owns nothing until its back-off ends; its keys go to their runner-up', async (t) => {
  let now = 1_000_000;
  const downs: string[] = [];
  const health = new PeerHealth({ now: () => now, onMarkedDown: (p) => downs.push(p) });
  const all = ['http://10.0.0.1:80', 'http://10.0.0.2:80', 'http://10.0.0.3:80'];
  const m = new Membership({ source: { kind: 'static', urls: all }, self: all[0] as string, health });
  const down = all[1] as string;
  const before = new Map(keys.map((k) => [k, m.ownerOf(k)?.peer]));

  t.equal(health.markDown(down, 'ECONNREFUSED'), 5_000, 'first failure: 5 s');
  t.equal(health.markDown(down, 'ECONNREFUSED'), 10_000, 'again while down: doubled');
  t.same(downs, [down], 'reported once when it went down');
  t.same(m.live(), [all[0], all[2]]);
  for (const k of keys) {
    const owner = m.ownerOf(k)?.peer;
    if (before.get(k) === down) t.equal(owner, rendezvousOwner(k, [all[0] as string, all[2] as string]), 'runner-up');
    else t.equal(owner, before.get(k), 'other keys stay');
  }
  health.markDown(all[0] as string, 'x');
  t.ok(m.live().includes(all[0] as string), 'this replica is never excluded from its own view');

  now += 10_001;
  t.same(m.live(), all, 'back after its back-off');
  t.equal(health.markDown(down, 'ETIMEDOUT'), 20_000, 'a failure right after coming back: longer still');
  for (let i = 0; i < 10; i++) health.markDown(down, 'ETIMEDOUT');
  t.equal(health.markDown(down, 'ETIMEDOUT'), 60_000, 'capped at 60 s');
  health.markUp(down);
  t.notOk(health.isDown(down), 'a success clears the record');
  t.equal(health.markDown(down, 'ECONNRESET'), 5_000, 'and the next failure starts from 5 s');
});

async function waitFor(check: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
