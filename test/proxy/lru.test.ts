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
