import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import t from 'tap';
import { startFixtureUpstream } from '../fixtures/upstream.js';
import { startMirror } from '../helpers/mirror.js';

const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;

async function setup(t: { teardown: (fn: () => Promise<void>) => void }) {
  const up = await startFixtureUpstream();
  const img = up.addImage('team/app', { tag: 'v1' });
  const dir = await mkdtemp(join(tmpdir(), 'htpasswd-'));
  const file = join(dir, 'htpasswd');
  // $2y$ is what `htpasswd -B` writes.
  await writeFile(file, `alice:${bcrypt.hashSync('s3cret', 4).replace(/^\$2b\$/, '$2y$')}\n`);
  const m = await startMirror({
    upstreams: [
      { namespace: 'private.example', host: up.host, clientAuthFile: file },
      { namespace: 'public.example', host: up.host },
    ],
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
