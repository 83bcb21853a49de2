import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import t, { type Test } from 'tap';
import { HtpasswdVerifier, type HtpasswdVerifierOptions } from '../../src/auth/htpasswd.js';
import { OciError } from '../../src/oci/errors.js';

const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;
const CLIENT = '192.0.2.1';

/** A verifier over a file with alice:s3cret whose compares are counted (and run on this thread: cost 4). */
async function setup(t: Test, options: HtpasswdVerifierOptions = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'htpasswd-unit-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'htpasswd');
  await writeFile(file, `alice:${bcrypt.hashSync('s3cret', 4).replace(/^\$2b\$/, '$2y$')}\n`);
  const compared: string[] = [];
  let now = 1_000_000;
  const verifier = new HtpasswdVerifier({
    now: () => now,
    compare: async (password, hash) => {
      compared.push(password);
      return bcrypt.compareSync(password, hash);
    },
    ...options,
  });
  t.teardown(() => verifier.close());
  return { verifier, file, compared, advance: (ms: number) => (now += ms) };
}

t.test('a verified user:password is remembered: the next check runs no bcrypt', async (t) => {
  const { verifier, file, compared } = await setup(t);
  t.equal(await verifier.verify(file, basic('alice', 's3cret'), CLIENT), true);
  t.equal(await verifier.verify(file, basic('alice', 's3cret'), CLIENT), true);
  t.same(compared, ['s3cret']);
});

t.test('a failed one is remembered briefly, then checked again', async (t) => {
  const { verifier, file, compared, advance } = await setup(t);
  t.equal(await verifier.verify(file, basic('alice', 'nope'), CLIENT), false);
  t.equal(await verifier.verify(file, basic('alice', 'nope'), CLIENT), false);
  t.equal(compared.length, 1, 'the repeat is answered from memory');
  advance(31_000);
  t.equal(await verifier.verify(file, basic('alice', 'nope'), CLIENT), false);
  t.equal(compared.length, 2, 'after 30 s it is compared again');
});

t.test('concurrent checks of the same credentials share one compare', async (t) => {
  const { verifier, file, compared } = await setup(t);
  const results = await Promise.all(Array.from({ length: 20 }, () => verifier.verify(file, basic('alice', 's3cret'), CLIENT)));
  t.same([...new Set(results)], [true]);
  t.equal(compared.length, 1);
});

t.test('an unknown user costs a compare too (timing does not tell which users exist) and fails', async (t) => {
  const { verifier, file, compared } = await setup(t);
  t.equal(await verifier.verify(file, basic('mallory', 's3cret'), CLIENT), false, "even with another user's password");
  t.equal(compared.length, 1);
});

t.test('new wrong passwords beyond the limit are refused with TOOMANYREQUESTS before any compare', async (t) => {
  const { verifier, file, compared } = await setup(t, { failureLimit: { burst: 3, refillMs: 10_000 } });
  for (let i = 0; i < 3; i++) t.equal(await verifier.verify(file, basic('alice', `guess-${i}`), CLIENT), false);
  const error = await verifier.verify(file, basic('alice', 'guess-3'), CLIENT).catch((e: unknown) => e);
  t.ok(error instanceof OciError && error.code === 'TOOMANYREQUESTS', 'TOOMANYREQUESTS');
  t.equal((error as OciError).retryAfter, 10);
  t.equal(compared.length, 3, 'the fourth guess was not compared');
  t.equal(await verifier.verify(file, basic('alice', 'guess-0'), CLIENT), false, 'a remembered failure is still a plain 401');
  t.equal(await verifier.verify(file, basic('alice', 's3cret'), '192.0.2.2'), true, 'another address is not limited');
});

t.test('a full bcrypt queue is TOOMANYREQUESTS, not an internal error', async (t) => {
  const { verifier, file } = await setup(t, {
    compare: async () => {
      const { PoolBusyError } = await import('../../src/auth/bcrypt-pool.js');
      throw new PoolBusyError();
    },
  });
  const error = await verifier.verify(file, basic('alice', 's3cret'), CLIENT).catch((e: unknown) => e);
  t.ok(error instanceof OciError && error.code === 'TOOMANYREQUESTS');
});

t.test('requests without Basic credentials are false without a compare or a failure counted', async (t) => {
  const { verifier, file, compared } = await setup(t, { failureLimit: { burst: 1 } });
  for (const header of [undefined, '', 'Bearer abc', 'Basic !!!', basic('alice', 'x').replace('Basic', 'Digest')]) {
    t.equal(await verifier.verify(file, header, CLIENT), false);
  }
  t.equal(compared.length, 0);
  t.equal(await verifier.verify(file, basic('alice', 's3cret'), CLIENT), true, 'the address is not limited by them');
});

t.test('a changed file takes effect: the old password stops working once the file is re-read', async (t) => {
  const { verifier, file, advance } = await setup(t);
  t.equal(await verifier.verify(file, basic('alice', 's3cret'), CLIENT), true);
  await writeFile(file, `alice:${bcrypt.hashSync('n3w', 4)}\n`);
  advance(11_000);
  t.equal(await verifier.verify(file, basic('alice', 's3cret'), CLIENT), false, 'the remembered success was for the old entry');
  t.equal(await verifier.verify(file, basic('alice', 'n3w'), CLIENT), true);
});
