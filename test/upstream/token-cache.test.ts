import t from 'tap';
import { TokenCache, type Token } from '../../src/upstream/token-cache.js';

function clock(start = 1_000_000): { now: () => number; advance(ms: number): void } {
  let now = start;
  return { now: () => now, advance: (ms) => (now += ms) };
}

t.test('a fetched token is reused for the same key until it expires', async (t) => {
  const c = clock();
  const cache = new TokenCache(c.now);
  let fetches = 0;
  const fetch = async (): Promise<Token> => ({ value: `tok${++fetches}`, expiresAt: c.now() + 60_000 });
  t.equal(await cache.getOrFetch('repository:a:pull', fetch), 'tok1');
  c.advance(59_999);
  t.equal(await cache.getOrFetch('repository:a:pull', fetch), 'tok1');
  t.equal(cache.get('repository:a:pull'), 'tok1');
  t.equal(fetches, 1);
});

t.test('an expired token is dropped and fetched again', async (t) => {
  const c = clock();
  const cache = new TokenCache(c.now);
  let fetches = 0;
  const fetch = async (): Promise<Token> => ({ value: `tok${++fetches}`, expiresAt: c.now() + 60_000 });
  await cache.getOrFetch('k', fetch);
  c.advance(60_000);
  t.equal(cache.get('k'), undefined, 'expired exactly at expiresAt');
  t.equal(await cache.getOrFetch('k', fetch), 'tok2');
  t.equal(fetches, 2);
});

t.test('tokens are kept per key (scope)', async (t) => {
  const c = clock();
  const cache = new TokenCache(c.now);
  await cache.getOrFetch('repository:a:pull', async () => ({ value: 'A', expiresAt: c.now() + 1000 }));
  await cache.getOrFetch('repository:b:pull', async () => ({ value: 'B', expiresAt: c.now() + 1000 }));
  t.equal(cache.get('repository:a:pull'), 'A');
  t.equal(cache.get('repository:b:pull'), 'B');
});

t.test('concurrent misses for one key share a single fetch', async (t) => {
  const cache = new TokenCache();
  let fetches = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const fetch = async (): Promise<Token> => {
    fetches++;
    await gate;
    return { value: 'shared', expiresAt: Date.now() + 60_000 };
  };
  const all = Promise.all(Array.from({ length: 10 }, () => cache.getOrFetch('k', fetch)));
  release();
  t.same(await all, Array(10).fill('shared'));
  t.equal(fetches, 1);
});

t.test('a failed fetch is reported to every waiter and not cached', async (t) => {
  const cache = new TokenCache();
  let fetches = 0;
  const failing = async (): Promise<Token> => {
    fetches++;
    throw new Error('token endpoint down');
  };
  const results = await Promise.allSettled([cache.getOrFetch('k', failing), cache.getOrFetch('k', failing)]);
  t.same(
    results.map((r) => r.status),
    ['rejected', 'rejected'],
  );
  t.equal(fetches, 1);
  t.equal(await cache.getOrFetch('k', async () => ({ value: 'ok', expiresAt: Date.now() + 1000 })), 'ok', 'the next call fetches again');
});

t.test('invalidate drops a cached token', async (t) => {
  const cache = new TokenCache();
  await cache.getOrFetch('k', async () => ({ value: 'old', expiresAt: Date.now() + 60_000 }));
  cache.invalidate('k');
  t.equal(cache.get('k'), undefined);
  t.equal(await cache.getOrFetch('k', async () => ({ value: 'new', expiresAt: Date.now() + 60_000 })), 'new');
});

t.test('tokens for many distinct scopes stay within the byte bound, the least recently used going first', async (t) => {
  const c = clock();
  const cache = new TokenCache({ now: c.now, maxBytes: 64 * 1024 });
  const token = 'x'.repeat(1000);
  for (let i = 0; i < 50_000; i++)
    await cache.getOrFetch(`repository:org/app${i}:pull`, async () => ({ value: token, expiresAt: c.now() + 60_000 }));
  t.ok(cache.size > 0 && cache.size <= 64, `at most 64 KiB of tokens are held (${cache.size} entries)`);
  t.equal(cache.get('repository:org/app49999:pull'), token, 'the newest is kept');
  t.equal(cache.get('repository:org/app0:pull'), undefined, 'the oldest was dropped');
});

t.test('a token heavier than the whole budget is used but not kept', async (t) => {
  const cache = new TokenCache({ maxBytes: 1000 });
  t.equal(await cache.getOrFetch('k', async () => ({ value: 'y'.repeat(2000), expiresAt: Date.now() + 60_000 })), 'y'.repeat(2000));
  t.equal(cache.size, 0);
});
