import t from 'tap';
import { clientKey, FailureLimiter } from '../../src/auth/failure-limiter.js';

t.test('an address may fail `burst` times, then must wait for a token', async (t) => {
  let now = 0;
  const limiter = new FailureLimiter({ burst: 3, refillMs: 1000, now: () => now });
  for (let i = 0; i < 3; i++) {
    t.equal(limiter.retryAfter('10.0.0.1'), 0, `attempt ${i + 1} allowed`);
    limiter.fail('10.0.0.1');
  }
  t.equal(limiter.retryAfter('10.0.0.1'), 1, 'limited, one second to the next token');
  t.equal(limiter.retryAfter('10.0.0.2'), 0, 'another address is not');
  now += 1000;
  t.equal(limiter.retryAfter('10.0.0.1'), 0, 'a token came back');
  limiter.fail('10.0.0.1');
  t.equal(limiter.retryAfter('10.0.0.1'), 1);
});

t.test('the map of addresses is bounded: the least recently failed are forgotten', async (t) => {
  const limiter = new FailureLimiter({ burst: 1, refillMs: 60_000, maxClients: 100, now: () => 0 });
  for (let i = 0; i < 1000; i++) limiter.fail(`10.0.${i >> 8}.${i & 255}`);
  t.ok(limiter.retryAfter('10.0.3.231') > 0, 'a recent address is still limited');
  t.equal(limiter.retryAfter('10.0.0.0'), 0, 'the oldest was dropped');
  t.equal((limiter as unknown as { buckets: Map<string, unknown> }).buckets.size, 100);
});

t.test('IPv6 clients are limited by their /64; IPv4-mapped addresses as IPv4', async (t) => {
  t.equal(clientKey('2001:db8:1:2:aaaa::1'), clientKey('2001:db8:1:2:bbbb:cccc:dddd:eeee'));
  t.not(clientKey('2001:db8:1:2::1'), clientKey('2001:db8:1:3::1'));
  t.equal(clientKey('2001:0db8:0001:0002::1'), '2001:db8:1:2::/64');
  t.equal(clientKey('::1'), '0:0:0:0::/64');
  t.equal(clientKey('::ffff:192.0.2.7'), '192.0.2.7');
  t.equal(clientKey('192.0.2.7'), '192.0.2.7');

  const limiter = new FailureLimiter({ burst: 1, now: () => 0 });
  limiter.fail('2001:db8:1:2::1');
  t.ok(limiter.retryAfter('2001:db8:1:2::ffff') > 0, 'another address of the same /64 shares the limit');
});
