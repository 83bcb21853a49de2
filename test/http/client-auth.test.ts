import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import t from 'tap';
import { Agent, request } from 'undici';
import { HtpasswdVerifier } from '../../src/auth/htpasswd.js';
import { startFixtureUpstream } from '../fixtures/upstream.js';
import { eventually } from '../helpers/eventually.js';
import { startMirror, type StartMirrorOptions } from '../helpers/mirror.js';

const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;

async function setup(
  t: { teardown: (fn: () => Promise<void>) => void },
  opts: { cost?: number } & Pick<StartMirrorOptions, 'htpasswd'> = {},
) {
  const up = await startFixtureUpstream();
  const img = up.addImage('team/app', { tag: 'v1' });
  const dir = await mkdtemp(join(tmpdir(), 'htpasswd-'));
  const file = join(dir, 'htpasswd');
  // $2y$ is what `htpasswd -B` writes.
  await writeFile(file, `alice:${bcrypt.hashSync('s3cret', opts.cost ?? 4).replace(/^\$2b\$/, '$2y$')}\n`);
  const m = await startMirror({
    upstreams: [
      { namespace: 'private.example', host: up.host, clientAuthFile: file },
      { namespace: 'public.example', host: up.host },
    ],
    htpasswd: opts.htpasswd,
  });
  t.teardown(async () => {
    await m.close();
    await up.close();
  });
  return { up, img, m };
}

t.test('a protected namespace answers 401 with a Basic challenge when no credentials are sent', async (t) => {
  const { m, up } = await setup(t);
  const r = await fetch(`${m.url}/v2/team/app/manifests/v1?ns=private.example`);
  t.equal(r.status, 401);
  t.match(r.headers.get('www-authenticate') ?? '', /^Basic realm="oci-registry"/);
  const body = (await r.json()) as { errors: { code: string }[] };
  t.equal(body.errors[0]?.code, 'UNAUTHORIZED');
  t.equal(up.countRequests({ pathIncludes: '/manifests/' }), 0, 'upstream not contacted');
});

t.test('a protected namespace refuses a wrong password', async (t) => {
  const { m } = await setup(t);
  const r = await fetch(`${m.url}/v2/team/app/manifests/v1?ns=private.example`, { headers: { authorization: basic('alice', 'nope') } });
  t.equal(r.status, 401);
});

t.test('a protected namespace serves a client with valid htpasswd credentials', async (t) => {
  const { m, img } = await setup(t);
  const r = await fetch(`${m.url}/v2/team/app/manifests/v1?ns=private.example`, { headers: { authorization: basic('alice', 's3cret') } });
  t.equal(r.status, 200);
  t.equal(r.headers.get('docker-content-digest'), img.digest);
});

t.test('a public namespace next to a protected one still serves anonymous pulls', async (t) => {
  const { m, img } = await setup(t);
  const r = await fetch(`${m.url}/v2/team/app/manifests/v1?ns=public.example`);
  t.equal(r.status, 200);
  t.equal(r.headers.get('docker-content-digest'), img.digest);
});

t.test('GET /v2/ challenges when a namespace is protected and accepts valid credentials', async (t) => {
  const { m } = await setup(t);
  const anon = await fetch(`${m.url}/v2/`);
  t.equal(anon.status, 401);
  t.match(anon.headers.get('www-authenticate') ?? '', /Basic/);
  const authed = await fetch(`${m.url}/v2/`, { headers: { authorization: basic('alice', 's3cret') } });
  t.equal(authed.status, 200);
});

/** A client whose connections come from `address`: another loopback address (Linux routes all of 127.0.0.0/8 to lo) is another client. */
function clientFrom(t: { teardown: (fn: () => Promise<void>) => void }, address: string): Agent {
  const agent = new Agent({ localAddress: address });
  t.teardown(() => agent.destroy());
  return agent;
}

async function statusOf(
  url: string,
  dispatcher: Agent,
  authorization?: string,
): Promise<{ status: number; retryAfter: string | undefined; code: string | undefined }> {
  const res = await request(url, { dispatcher, ...(authorization ? { headers: { authorization } } : {}) });
  const text = await res.body.text();
  const retryAfter = res.headers['retry-after'];
  let code: string | undefined;
  try {
    code = (JSON.parse(text) as { errors?: { code?: string }[] }).errors?.[0]?.code;
  } catch {
    code = undefined;
  }
  return { status: res.statusCode, retryAfter: typeof retryAfter === 'string' ? retryAfter : undefined, code };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

t.test('clients hammering wrong passwords do not slow down other requests (bcrypt runs off the event loop)', async (t) => {
  // The failed-login limit is off here: this is about where bcrypt runs, not about refusing the guesses.
  // Cost 8: ~25-100 ms per compare in bcryptjs (htpasswd -B writes 5, most bcrypt tools 10).
  const { m } = await setup(t, { cost: 8, htpasswd: new HtpasswdVerifier({ failureLimit: false }) });
  const publicUrl = `${m.url}/v2/team/app/manifests/v1?ns=public.example`;
  const privateUrl = `${m.url}/v2/team/app/manifests/v1?ns=private.example`;
  const probe = new Agent();
  t.teardown(() => probe.destroy());
  /** Latencies of sequential requests for at least `ms` and at least 30 of them. */
  const latencies = async (ms: number): Promise<number[]> => {
    const out: number[] = [];
    const until = performance.now() + ms;
    while (out.length < 30 || performance.now() < until) {
      const started = performance.now();
      const res = await request(publicUrl, { dispatcher: probe });
      await res.body.arrayBuffer();
      out.push(performance.now() - started);
    }
    return out;
  };
  await latencies(300); // warm: the manifest is cached, the connection open, the code compiled
  const baseline = median(await latencies(1500));

  let stop = false;
  let guesses = 0;
  const hammer = async (i: number): Promise<void> => {
    const agent = new Agent();
    t.teardown(() => agent.destroy());
    for (let n = 0; !stop; n++) {
      await statusOf(privateUrl, agent, basic('alice', `guess-${i}-${n}`));
      guesses++;
    }
  };
  const hammers = Array.from({ length: 8 }, (_, i) => hammer(i));
  // The guessing is in full swing (the worker has started and answered every client once).
  t.ok(await eventually(() => guesses >= 8, 30_000), 'the guesses are answered');
  const before = guesses;
  const loaded = median(await latencies(1500));
  const during = guesses - before;
  stop = true;
  await Promise.all(hammers);
  t.ok(during >= 4, `wrong passwords were being checked meanwhile (${during})`);
  const ratio = loaded / Math.max(baseline, 0.5);
  t.ok(
    ratio < 20,
    `median latency of a public-namespace request: ${baseline.toFixed(2)} ms alone, ${loaded.toFixed(2)} ms under the guessing (x${ratio.toFixed(1)})`,
  );
});

t.test('an address that keeps failing logins gets 429 TOOMANYREQUESTS with Retry-After; other addresses do not', async (t) => {
  const { m } = await setup(t);
  const url = `${m.url}/v2/team/app/manifests/v1?ns=private.example`;
  const attacker = clientFrom(t, '127.0.0.2');
  const statuses: number[] = [];
  for (let i = 0; i < 12; i++) statuses.push((await statusOf(url, attacker, basic('alice', `guess-${i}`))).status);
  t.same(statuses.slice(0, 10), Array(10).fill(401), 'the first ten wrong passwords are 401');
  const limited = await statusOf(url, attacker, basic('alice', 'guess-more'));
  t.equal(limited.status, 429, 'then the address is limited');
  t.equal(limited.code, 'TOOMANYREQUESTS');
  t.ok(Number(limited.retryAfter) >= 1, `with Retry-After (${limited.retryAfter})`);
  t.equal((await statusOf(url, attacker, basic('alice', 's3cret'))).status, 429, 'even the right password is not checked for it now');

  const other = clientFrom(t, '127.0.0.3');
  t.equal((await statusOf(url, other, basic('alice', 'wrong'))).status, 401, 'another address still gets 401');
  t.equal((await statusOf(url, other, basic('alice', 's3cret'))).status, 200, 'and logs in');
  t.equal((await statusOf(url, attacker)).status, 401, 'a limited address without credentials still gets the challenge');
});

t.test('credentials verified before an address was limited keep working from it', async (t) => {
  const { m } = await setup(t);
  const url = `${m.url}/v2/team/app/manifests/v1?ns=private.example`;
  const shared = clientFrom(t, '127.0.0.4');
  t.equal((await statusOf(url, shared, basic('alice', 's3cret'))).status, 200);
  for (let i = 0; i < 12; i++) await statusOf(url, shared, basic('alice', `guess-${i}`));
  t.equal((await statusOf(url, shared, basic('alice', 'guess-x'))).status, 429, 'the address is limited');
  t.equal((await statusOf(url, shared, basic('alice', 's3cret'))).status, 200, 'the known-good credentials still pass');
});

t.test('repeating one wrong password is not a new attempt each time', async (t) => {
  const { m } = await setup(t);
  const url = `${m.url}/v2/team/app/manifests/v1?ns=private.example`;
  const client = clientFrom(t, '127.0.0.5');
  const statuses: number[] = [];
  // A client retrying with a stale password (docker does, per layer) must not lock itself out.
  for (let i = 0; i < 30; i++) statuses.push((await statusOf(url, client, basic('alice', 'old-password'))).status);
  t.same([...new Set(statuses)], [401]);
});
