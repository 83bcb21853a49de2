/**
 * Rendezvous hashing (src/cluster/rendezvous.ts): every replica that sees the same members picks the same
 * owner, ownership is spread evenly, and a membership change moves only the keys of the replica that
 * came or went (property tests with fast-check).
 */
import fc from 'fast-check';
import t from 'tap';
import { clusterKeys, rendezvousOwner } from '../../src/cluster/rendezvous.js';

const member = fc.integer({ min: 1, max: 250 }).map((i) => `http://10.0.0.${i}:8080`);
const members = fc.uniqueArray(member, { minLength: 1, maxLength: 12 });
const key = fc.oneof(
  fc.stringMatching(/^[a-f0-9]{64}$/).map((hex) => clusterKeys.digest(`sha256:${hex}`)),
  fc
    .tuple(
      fc.constantFrom('docker.io', 'ghcr.io', 'registry.local:5000'),
      fc.stringMatching(/^[a-z0-9]{1,12}(\/[a-z0-9]{1,8})?$/),
      fc.stringMatching(/^[A-Za-z0-9_.-]{1,20}$/),
    )
    .map(([ns, repo, tag]) => clusterKeys.tag(ns, repo, tag)),
);

t.test('the owner is a member, whatever the order the members are listed in', async (t) => {
  fc.assert(
    fc.property(members, key, (ms, k) => {
      const owner = rendezvousOwner(k, ms);
      return owner !== undefined && ms.includes(owner) && rendezvousOwner(k, [...ms].reverse()) === owner;
    }),
  );
  t.equal(rendezvousOwner('sha256:x', []), undefined, 'no members: no owner');
});

t.test('a member leaving moves only its own keys', async (t) => {
  fc.assert(
    fc.property(
      members.filter((ms) => ms.length >= 2),
      fc.array(key, { minLength: 20, maxLength: 60 }),
      fc.nat(),
      (ms, keys, pick) => {
        const gone = ms[pick % ms.length] as string;
        const rest = ms.filter((m) => m !== gone);
        return keys.every((k) => {
          const before = rendezvousOwner(k, ms);
          const after = rendezvousOwner(k, rest);
          return before === gone ? after !== gone : after === before;
        });
      },
    ),
  );
  t.pass('checked by fast-check');
});

t.test('a member joining takes keys only for itself', async (t) => {
  fc.assert(
    fc.property(members, member, fc.array(key, { minLength: 20, maxLength: 60 }), (ms, joining, keys) => {
      fc.pre(!ms.includes(joining));
      const grown = [...ms, joining];
      return keys.every((k) => {
        const after = rendezvousOwner(k, grown);
        return after === joining || after === rendezvousOwner(k, ms);
      });
    }),
  );
  t.pass('checked by fast-check');
});

t.test('ownership is spread evenly over three replicas', async (t) => {
  const ms = ['http://127.0.0.1:5001', 'http://127.0.0.1:5002', 'http://127.0.0.1:5003'];
  const counts = new Map(ms.map((m) => [m, 0]));
  const n = 3000;
  for (let i = 0; i < n; i++) {
    const owner = rendezvousOwner(clusterKeys.digest(`sha256:${i.toString(16).padStart(64, '0')}`), ms) as string;
    counts.set(owner, (counts.get(owner) ?? 0) + 1);
  }
  for (const [m, c] of counts) t.ok(c > n * 0.28 && c < n * 0.39, `${m} owns ${c} of ${n}`);
});
