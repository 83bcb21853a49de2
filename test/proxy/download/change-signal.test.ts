/** What wakes a download's followers. */
import t from 'tap';
import { ChangeSignal } from '../../../src/proxy/download/change-signal.js';

t.test('a change signal wakes its listeners until they stop, and next() once', async (t) => {
  const s = new ChangeSignal();
  let a = 0;
  const stop = s.listen(() => a++);
  const next = s.next();
  s.notify();
  await next;
  s.notify();
  t.equal(a, 2);
  stop();
  s.notify();
  t.equal(a, 2, 'not after stop');
});
