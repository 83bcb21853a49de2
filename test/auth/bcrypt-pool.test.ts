import bcrypt from 'bcryptjs';
import type { Worker } from 'node:worker_threads';
import t from 'tap';
import { BcryptPool, PoolBusyError } from '../../src/auth/bcrypt-pool.js';

const HASH = bcrypt.hashSync('right', 4);

t.test('compares in a worker: the right password is true, a wrong one and a malformed hash false', async (t) => {
  const pool = new BcryptPool({ size: 1 });
  t.teardown(() => pool.close());
  t.equal(await pool.compare('right', HASH), true);
  t.equal(await pool.compare('wrong', HASH), false);
  t.equal(await pool.compare('right', 'not-a-bcrypt-hash'), false);
});

t.test('the event loop keeps turning while a slow compare runs', async (t) => {
  const pool = new BcryptPool({ size: 1 });
  t.teardown(() => pool.close());
  await pool.compare('warm', HASH); // the worker is up
  const slow = bcrypt.hashSync('x', 11); // hundreds of ms in bcryptjs
  let ticks = 0;
  let longest = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    longest = Math.max(longest, now - last);
    last = now;
    ticks++;
  }, 5);
  const started = performance.now();
  await pool.compare('y', slow);
  const took = performance.now() - started;
  clearInterval(timer);
  // Compared on this thread, the timer could not fire at all until the compare ended.
  t.ok(ticks >= 3, `the timer fired ${ticks} times during a ${took.toFixed(0)} ms compare`);
  t.ok(longest < took * 0.75, `the longest gap between ticks (${longest.toFixed(0)} ms) is well below the compare's time`);
});

t.test('a full queue rejects at once with PoolBusyError instead of growing', async (t) => {
  const pool = new BcryptPool({ size: 1, maxQueued: 2 });
  t.teardown(() => pool.close());
  const slow = bcrypt.hashSync('x', 10);
  const accepted = [pool.compare('a', slow), pool.compare('b', slow), pool.compare('c', slow)];
  await t.rejects(pool.compare('d', slow), PoolBusyError);
  t.equal(pool.pending, 3, 'one running, two queued');
  t.same(await Promise.all(accepted), [false, false, false], 'the accepted ones complete');
  t.equal(await pool.compare('right', HASH), true, 'and the pool takes work again');
});

t.test('close() rejects what waits and stops the workers', async (t) => {
  const pool = new BcryptPool({ size: 1 });
  const slow = bcrypt.hashSync('x', 10);
  const waiting = Promise.allSettled([pool.compare('a', slow), pool.compare('b', slow)]);
  await pool.close();
  const [running, queued] = await waiting;
  t.match(running, { status: 'rejected', reason: { message: /closed/ } }, 'the running compare');
  t.match(queued, { status: 'rejected', reason: { message: /closed/ } }, 'the queued one');
  await t.rejects(pool.compare('c', HASH), /closed/);
});

t.test('a worker that dies fails its compare; the next compare gets a new worker', async (t) => {
  const pool = new BcryptPool({ size: 1 });
  t.teardown(() => pool.close());
  const slow = bcrypt.hashSync('x', 10);
  const running = pool.compare('a', slow).then(
    () => 'resolved',
    (e: unknown) => (e as Error).message,
  );
  const queued = pool.compare('right', HASH);
  const { slots } = pool as unknown as { slots: { worker: Worker }[] };
  await slots[0]?.worker.terminate();
  t.match(await running, /exited/, 'the running compare fails');
  t.equal(await queued, true, 'the queued one runs on a replacement');
  t.equal(await pool.compare('wrong', HASH), false);
});
