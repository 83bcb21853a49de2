/**
 * Docker credential helpers (`credential_helper: <name>` runs `docker-credential-<name> get`).
 *
 * Each test writes its own helper, a small shell script, into a temp directory prepended to PATH. The
 * script records every call (the server URL it read on stdin) and prints the answer file, or fails.
 */
import t, { type Test } from 'tap';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { parseUpstreamYaml } from '../../src/config/upstreams.js';
import { DOCKER_HUB_ALIASES } from '../../src/oci/docker-hub.js';
import { CredentialHelper, helperServerUrl } from '../../src/upstream/credential-helper.js';
import { startFixtureUpstream, type AuthMode, type FixtureUpstream } from '../fixtures/upstream.js';
import { startMirror, type TestMirror } from '../helpers/mirror.js';

const OCI_ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json';
const USER = 'mirror-user';
const PASSWORD = 's3cret-Passw0rd';

const SCRIPT = `#!/bin/sh
dir="$(dirname "$0")"
server=""
read -r server || true
printf '%s\\n' "$server" >> "$dir/calls"
if [ -f "$dir/sleep" ]; then sleep "$(cat "$dir/sleep")"; fi
if [ -f "$dir/fail" ]; then cat "$dir/fail"; exit 1; fi
cat "$dir/answer"
`;

interface Helper {
  /** The name for credential_helper. */
  name: string;
  dir: string;
  answer(doc: unknown): Promise<void>;
  /** Makes the helper print `message` and exit 1. */
  fail(message: string): Promise<void>;
  /** The server URLs it was called with, one per call. */
  calls(): Promise<string[]>;
  sleep(seconds: number): Promise<void>;
}

let helperCount = 0;

async function helper(t: Test, answer?: unknown): Promise<Helper> {
  const dir = await mkdtemp(join(tmpdir(), 'oci-cred-helper-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const name = `test${process.pid}-${helperCount++}`;
  await writeFile(join(dir, `docker-credential-${name}`), SCRIPT, { mode: 0o755 });
  process.env['PATH'] = `${dir}${delimiter}${process.env['PATH'] ?? ''}`;
  const h: Helper = {
    name,
    dir,
    answer: async (doc) => {
      await rm(join(dir, 'fail'), { force: true });
      await writeFile(join(dir, 'answer'), typeof doc === 'string' ? doc : JSON.stringify(doc));
    },
    fail: (message) => writeFile(join(dir, 'fail'), message),
    calls: async () => (await readFile(join(dir, 'calls'), 'utf8').catch(() => '')).split('\n').filter((l) => l !== ''),
    sleep: (seconds) => writeFile(join(dir, 'sleep'), String(seconds)),
  };
  if (answer !== undefined) await h.answer(answer);
  return h;
}

function creds(host: string, username = USER, secret = PASSWORD): unknown {
  return { ServerURL: host, Username: username, Secret: secret };
}

async function upstream(t: Test, auth: AuthMode): Promise<FixtureUpstream> {
  const up = await startFixtureUpstream({ auth });
  t.teardown(() => up.close());
  return up;
}

async function mirrorFor(t: Test, host: string, h: Helper, ttlMs?: number): Promise<TestMirror> {
  const m = await startMirror({
    upstreams: [{ namespace: host, host, credentialHelper: h.name, ...(ttlMs === undefined ? {} : { credentialTtlMs: ttlMs }) }],
  });
  t.teardown(() => m.close());
  return m;
}

async function get(url: string): Promise<{ status: number; text: string; code: string | undefined; message: string | undefined }> {
  const res = await fetch(url, { headers: { accept: OCI_ACCEPT }, signal: AbortSignal.timeout(30_000) });
  const text = await res.text();
  let code: string | undefined;
  let message: string | undefined;
  try {
    const e = (JSON.parse(text) as { errors?: { code?: string; message?: string }[] }).errors?.[0];
    code = e?.code;
    message = e?.message;
  } catch {
    // not an error body
  }
  return { status: res.status, text, code, message };
}

const manifestUrl = (m: TestMirror, up: { host: string }, ref: string, repo = 'x/app') =>
  `${m.url}/v2/${repo}/manifests/${ref}?ns=${up.host}`;
const blobUrl = (m: TestMirror, up: { host: string }, digest: string) => `${m.url}/v2/x/app/blobs/${digest}?ns=${up.host}`;

t.test('basic auth: the helper supplies username and password, asked with the upstream host on stdin', async (t) => {
  const up = await upstream(t, { kind: 'basic', username: USER, password: PASSWORD });
  up.addImage('x/app', { tag: 'v1' });
  const h = await helper(t, creds(up.host));
  const m = await mirrorFor(t, up.host, h);
  t.equal((await get(manifestUrl(m, up, 'v1'))).status, 200);
  t.same(await h.calls(), [up.host]);
  t.ok(up.requests.some((r) => r.headers.authorization === `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`));
});

t.test('bearer auth: the helper credentials are sent to the token endpoint', async (t) => {
  const up = await upstream(t, { kind: 'bearer', username: USER, password: PASSWORD });
  up.addImage('x/app', { tag: 'v1' });
  const h = await helper(t, creds(up.host));
  const m = await mirrorFor(t, up.host, h);
  t.equal((await get(manifestUrl(m, up, 'v1'))).status, 200);
  t.equal((await h.calls()).length, 1);
  t.ok(up.tokenRequests.length >= 1);
  t.ok(up.tokenRequests.every((r) => r.headers.authorization?.startsWith('Basic ')));
});

t.test('the answer is cached: more requests within credential_ttl do not run the helper again', async (t) => {
  const up = await upstream(t, { kind: 'basic', username: USER, password: PASSWORD });
  const img = up.addImage('x/app', { tag: 'v1', layers: [Buffer.from('one'), Buffer.from('two')] });
  const h = await helper(t, creds(up.host));
  const m = await mirrorFor(t, up.host, h);
  t.equal((await get(manifestUrl(m, up, 'v1'))).status, 200);
  for (const d of [...img.layerDigests, img.configDigest]) t.equal((await get(blobUrl(m, up, d))).status, 200);
  t.equal((await h.calls()).length, 1);
});

t.test('after credential_ttl the helper is asked again', async (t) => {
  const up = await upstream(t, { kind: 'basic', username: USER, password: PASSWORD });
  const img = up.addImage('x/app', { tag: 'v1' });
  const h = await helper(t, creds(up.host));
  const m = await mirrorFor(t, up.host, h, 300);
  t.equal((await get(manifestUrl(m, up, 'v1'))).status, 200);
  await new Promise((r) => setTimeout(r, 400));
  t.equal((await get(blobUrl(m, up, img.configDigest))).status, 200);
  t.equal((await h.calls()).length, 2);
});

t.test('concurrent requests share one helper run', async (t) => {
  const up = await upstream(t, { kind: 'basic', username: USER, password: PASSWORD });
  const img = up.addImage('x/app', { tag: 'v1', layers: [Buffer.from('a'), Buffer.from('b'), Buffer.from('c')] });
  const h = await helper(t, creds(up.host));
  await h.sleep(0.3);
  const m = await mirrorFor(t, up.host, h);
  // A fresh mirror: every request of the burst meets the Basic challenge while the helper runs.
  const burst = await Promise.all([
    get(manifestUrl(m, up, 'v1')),
    ...[...img.layerDigests, img.configDigest].map((d) => get(blobUrl(m, up, d))),
  ]);
  t.same(
    burst.map((r) => r.status),
    [200, 200, 200, 200, 200],
  );
  t.equal((await h.calls()).length, 1);
});

t.test('basic auth: credentials rotated before credential_ttl are refreshed after a 401, once', async (t) => {
  const up = await upstream(t, { kind: 'basic', username: USER, password: PASSWORD });
  up.addImage('x/app', { tag: 'v1' });
  up.addImage('x/other', { tag: 'v1' });
  const h = await helper(t, creds(up.host, USER, 'old-password'));
  const m = await mirrorFor(t, up.host, h);
  const denied = await get(manifestUrl(m, up, 'v1'));
  t.equal(denied.status, 403, 'fresh but wrong credentials: denied without asking the helper twice');
  t.equal((await h.calls()).length, 1);
  await h.answer(creds(up.host));
  t.equal((await get(manifestUrl(m, up, 'v1', 'x/other'))).status, 200, 'the cached credentials are rejected, the helper asked again');
  t.equal((await h.calls()).length, 2);
});

t.test('bearer auth: credentials the token endpoint rejects are refreshed and the request retried', async (t) => {
  const up = await upstream(t, { kind: 'bearer', username: USER, password: PASSWORD });
  up.addImage('x/app', { tag: 'v1' });
  up.addImage('x/other', { tag: 'v1' });
  const h = await helper(t, creds(up.host, USER, 'old-password'));
  const m = await mirrorFor(t, up.host, h);
  t.equal((await get(manifestUrl(m, up, 'v1'))).status, 403);
  await h.answer(creds(up.host));
  t.equal((await get(manifestUrl(m, up, 'v1', 'x/other'))).status, 200);
  t.equal((await h.calls()).length, 2);
});

t.test('a helper that has no credentials for the registry: 403 DENIED naming the helper', async (t) => {
  const up = await upstream(t, { kind: 'basic', username: USER, password: PASSWORD });
  up.addImage('x/app', { tag: 'v1' });
  const h = await helper(t);
  await h.fail('credentials not found in native keychain');
  const m = await mirrorFor(t, up.host, h);
  const r = await get(manifestUrl(m, up, 'v1'));
  t.equal(r.status, 403);
  t.equal(r.code, 'DENIED');
  t.match(r.message, `docker-credential-${h.name}`);
});

t.test('a missing helper program: 502 UPSTREAM_ERROR naming it', async (t) => {
  const up = await upstream(t, { kind: 'basic', username: USER, password: PASSWORD });
  up.addImage('x/app', { tag: 'v1' });
  const m = await startMirror({ upstreams: [{ namespace: up.host, host: up.host, credentialHelper: 'does-not-exist-anywhere' }] });
  t.teardown(() => m.close());
  const r = await get(manifestUrl(m, up, 'v1'));
  t.equal(r.status, 502);
  t.equal(r.code, 'UPSTREAM_ERROR');
  t.match(r.message, /docker-credential-does-not-exist-anywhere not found on PATH/);
});

t.test('a helper failing or answering garbage: 502, and the secret never reaches the client', async (t) => {
  const up = await upstream(t, { kind: 'basic', username: USER, password: PASSWORD });
  up.addImage('x/app', { tag: 'v1' });
  const h = await helper(t, `{"Username":"${USER}","Secret":"${PASSWORD}"`); // truncated JSON
  const m = await mirrorFor(t, up.host, h);
  const garbage = await get(manifestUrl(m, up, 'v1'));
  t.equal(garbage.status, 502);
  t.match(garbage.message, /not JSON/);
  t.notMatch(garbage.text, PASSWORD);

  await h.fail(`some error mentioning ${PASSWORD}`);
  const failed = await get(manifestUrl(m, up, 'v1'));
  t.equal(failed.status, 502);
  t.match(failed.message, /failed \(exit 1\)/);
  t.notMatch(failed.text, PASSWORD);
});

t.test('a helper that does not answer in time is killed: UPSTREAM_ERROR', async (t) => {
  const h = await helper(t, creds('registry.example'));
  await h.sleep(5);
  const helperObj = new CredentialHelper({
    name: h.name,
    serverUrl: 'registry.example',
    ttlMs: 60_000,
    namespace: 'registry.example',
    timeoutMs: 300,
  });
  const started = Date.now();
  await t.rejects(helperObj.get(), { code: 'UPSTREAM_ERROR', message: /did not answer within 0.3 s/ });
  t.ok(Date.now() - started < 3000, 'gives up at the timeout');
});

t.test('the default timeout is 10 s', async (t) => {
  const { HELPER_TIMEOUT_MS } = await import('../../src/upstream/credential-helper.js');
  t.equal(HELPER_TIMEOUT_MS, 10_000);
});

t.test('Docker Hub: the helper is asked about https://index.docker.io/v1/', async (t) => {
  const h = await helper(t, creds('https://index.docker.io/v1/'));
  const { helperServerUrl } = await import('../../src/upstream/credential-helper.js');
  const c = new CredentialHelper({
    name: h.name,
    serverUrl: helperServerUrl('registry-1.docker.io'),
    ttlMs: 60_000,
    namespace: 'docker.io',
  });
  t.same(await c.get(), { username: USER, secret: PASSWORD, identityToken: false });
  t.same(await h.calls(), ['https://index.docker.io/v1/']);
});

/** A registry whose token endpoint only takes the OAuth2 refresh-token grant (POST), like docker's with identity tokens. */
async function oauthRegistry(t: Test, identityToken: string): Promise<{ host: string; forms: URLSearchParams[] }> {
  const forms: URLSearchParams[] = [];
  let base = '';
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (url.pathname === '/token') {
        const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
        forms.push(form);
        if (req.method === 'POST' && form.get('grant_type') === 'refresh_token' && form.get('refresh_token') === identityToken) {
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ access_token: 'granted', expires_in: 300 }));
        } else {
          res.writeHead(401, { 'content-type': 'application/json' }).end('{"errors":[{"code":"UNAUTHORIZED","message":"no"}]}');
        }
        return;
      }
      if (req.headers.authorization !== 'Bearer granted') {
        res
          .writeHead(401, {
            'www-authenticate': `Bearer realm="${base}/token",service="oauth-fixture",scope="repository:x/app:pull"`,
            'content-type': 'application/json',
          })
          .end('{"errors":[{"code":"UNAUTHORIZED","message":"auth"}]}');
        return;
      }
      if (url.pathname === '/v2/x/app/tags/list') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ name: 'x/app', tags: ['v1', 'v2'] }));
        return;
      }
      res.writeHead(404).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  base = `http://${host}`;
  return { host, forms };
}

t.test('an identity token (Username "<token>") is exchanged with the OAuth2 refresh-token grant', async (t) => {
  const reg = await oauthRegistry(t, 'the-identity-token');
  const h = await helper(t, creds(reg.host, '<token>', 'the-identity-token'));
  const m = await mirrorFor(t, reg.host, h);
  const r = await get(`${m.url}/v2/x/app/tags/list?ns=${reg.host}`);
  t.equal(r.status, 200);
  t.same(JSON.parse(r.text), { name: 'x/app', tags: ['v1', 'v2'] });
  const form = reg.forms[0];
  t.equal(form?.get('grant_type'), 'refresh_token');
  t.equal(form?.get('service'), 'oauth-fixture');
  t.equal(form?.get('scope'), 'repository:x/app:pull');
  t.ok(form?.get('client_id'));
});

t.test('an identity token cannot answer a Basic challenge: 403 DENIED saying so', async (t) => {
  const up = await upstream(t, { kind: 'basic', username: USER, password: PASSWORD });
  up.addImage('x/app', { tag: 'v1' });
  const h = await helper(t, creds(up.host, '<token>', 'an-identity-token'));
  const m = await mirrorFor(t, up.host, h);
  const r = await get(manifestUrl(m, up, 'v1'));
  t.equal(r.status, 403);
  t.match(r.message, /identity token/);
  t.notMatch(r.text, 'an-identity-token');
});

t.test('config: credential_helper and credential_ttl are read from the YAML, ttl defaults to 15m', async (t) => {
  const [a, b] = parseUpstreamYaml(
    [
      '- namespace: a.example',
      '  host: a.example',
      '  credential_helper: ecr-login',
      '  credential_ttl: 5m',
      '- namespace: b.example',
      '  host: b.example',
      '  credential_helper: gcr',
    ].join('\n'),
    'u.yaml',
  );
  t.equal(a?.credentialHelper, 'ecr-login');
  t.equal(a?.credentialTtlMs, 5 * 60_000);
  t.equal(b?.credentialHelper, 'gcr');
  t.equal(b?.credentialTtlMs, 15 * 60_000);
});

t.test('config: credential_helper excludes username/password and must be a plain name', async (t) => {
  t.throws(
    () =>
      parseUpstreamYaml(
        '- namespace: a.example\n  host: a.example\n  credential_helper: ecr-login\n  username: u\n  password: p\n',
        'u.yaml',
      ),
    /u\.yaml: entry 0 \(namespace a\.example\): keys "credential_helper" and "username"\/"password" are exclusive/,
  );
  t.throws(
    () => parseUpstreamYaml('- namespace: a.example\n  host: a.example\n  credential_helper: ../evil\n', 'u.yaml'),
    /key "credential_helper" must be a helper name/,
  );
  t.throws(
    () => parseUpstreamYaml('- namespace: a.example\n  host: a.example\n  credential_ttl: soon\n', 'u.yaml'),
    /key "credential_ttl" must be a duration/,
  );
});

t.test('every Docker Hub registry host asks the helper about the key docker stores Hub credentials under', async (t) => {
  for (const host of DOCKER_HUB_ALIASES) t.equal(helperServerUrl(host), 'https://index.docker.io/v1/', host);
  t.equal(helperServerUrl('ghcr.io'), 'ghcr.io', 'other hosts are asked about by name');
});
