/** The references that keep a download's spool: cleanup runs once, at zero. */
import t from 'tap';
import { RefCount } from '../../../src/proxy/download/ref-count.js';

t.test('onZero runs once, when the last holder releases', async (t) => {
  let cleaned = 0;
  const refs = new RefCount(() => cleaned++);
  refs.retain();
  refs.release();
  t.equal(cleaned, 0, 'one holder left');
  refs.release();
  t.equal(cleaned, 1, 'cleaned at zero');
  refs.release();
  t.equal(cleaned, 1, 'a release too many does nothing');
  t.equal(refs.held, 0, 'nothing held');
});
