/** The in-memory window of a download's newest chunks. */
import t from 'tap';
import { RecentChunks } from '../../../src/proxy/download/recent-chunks.js';

t.test('slices are views of the held chunks, found by offset', async (t) => {
  const r = new RecentChunks(100);
  const a = Buffer.from('aaaaaaaaaa');
  r.append(0, a);
  r.append(10, Buffer.from('bbbbbbbbbb'));
  t.equal(r.slice(3, 4)?.toString(), 'aaaa');
  t.equal(r.slice(8, 5)?.toString(), 'aa', 'one chunk at a time');
  t.equal(r.slice(10, 100)?.toString(), 'bbbbbbbbbb');
  t.equal(r.slice(20, 1), undefined, 'not yet received');
  t.equal(r.slice(0, 1)?.buffer, a.buffer, 'a view, not a copy');
});

t.test('trim keeps at most the limit of written chunks, and every unwritten one', async (t) => {
  const r = new RecentChunks(15);
  for (let i = 0; i < 5; i++) r.append(i * 10, Buffer.alloc(10, i));
  r.trim(0);
  t.equal(r.size, 50, 'nothing written: everything held');
  r.trim(30);
  t.equal(r.size, 20, 'written chunks dropped down to the limit, unwritten kept');
  t.equal(r.slice(25, 1), undefined, 'the dropped ones are gone');
  t.equal(r.slice(30, 1)?.[0], 3, 'the first unwritten one is there');
  r.trim(50);
  t.equal(r.size, 10, 'all written: down to the limit');
  r.clear();
  t.equal(r.size, 0);
  t.equal(r.slice(40, 1), undefined);
});
