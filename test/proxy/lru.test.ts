import t from 'tap';
import { Lru } from '../../src/proxy/lru.js';

t.test('the least recently used entry goes first when the weight budget is exceeded', async (t) => {
  const lru = new Lru<string>(3);
  lru.set('a', 'A');
  lru.set('b', 'B');
  lru.set('c', 'C');
  t.equal(lru.get('a'), 'A', 'touching a makes b the oldest');
  lru.set('d', 'D');
  t.equal(lru.get('b'), undefined);
  t.equal(lru.get('a'), 'A');
  t.equal(lru.get('c'), 'C');
  t.equal(lru.get('d'), 'D');
});

t.test('entries are weighed, and one heavier than the whole budget is not kept', async (t) => {
  const lru = new Lru<Buffer>(10, (b) => b.length);
  lru.set('small', Buffer.alloc(4));
  lru.set('huge', Buffer.alloc(11));
  t.equal(lru.get('huge'), undefined);
  lru.set('mid', Buffer.alloc(6));
  t.ok(lru.get('small'));
  lru.set('more', Buffer.alloc(2));
  t.equal(lru.get('mid'), undefined, 'mid was least recently used');
});

t.test('onEvict is told of entries dropped for room, not of delete() or a replaced value', async (t) => {
  const evicted: string[] = [];
  const lru = new Lru<string>(2, () => 1, { onEvict: (key) => evicted.push(key) });
  lru.set('a', 'A');
  lru.set('a', 'A2');
  lru.set('b', 'B');
  lru.delete('b');
  lru.set('c', 'C');
  lru.set('d', 'D');
  t.same(evicted, ['a']);
  t.equal(lru.size, 2);
});

t.test('entries unused for idleMs are dropped (and reported) on the next access', async (t) => {
  let now = 0;
  const evicted: string[] = [];
  const lru = new Lru<string>(10, () => 1, { idleMs: 1000, now: () => now, onEvict: (key) => evicted.push(key) });
  lru.set('old', 'O');
  now = 600;
  lru.set('young', 'Y');
  now = 1000;
  t.equal(lru.get('old'), undefined, 'idle for idleMs: gone');
  t.equal(lru.get('young'), 'Y', 'used 400 ms ago: kept, and its use renews it');
  now = 1900;
  lru.prune();
  t.equal(lru.size, 1, 'prune() keeps the renewed entry');
  t.same(evicted, ['old']);
});

t.test('clear() empties the cache and returns the values without onEvict', async (t) => {
  const evicted: string[] = [];
  const lru = new Lru<string>(10, () => 1, { onEvict: (key) => evicted.push(key) });
  lru.set('a', 'A');
  lru.set('b', 'B');
  t.same(lru.clear(), ['A', 'B']);
  t.equal(lru.size, 0);
  t.same(evicted, []);
});
