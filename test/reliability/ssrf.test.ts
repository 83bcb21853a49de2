/**
 * SSRF: a client-chosen namespace is a dial target. Without a config file (open mirroring) the mirror must
 * refuse loopback, link-local and private destinations - named by IP literal, by a localhost name, or by a
 * host name that only resolves to such an address - and must not even contact them. A namespace the
 * operator configured explicitly is mirrored whatever its address.
 */
import { lookup } from 'node:dns/promises';
import { hostname } from 'node:os';
import { Writable } from 'node:stream';
import t, { type Test } from 'tap';
import { createLogger } from '../../src/log.js';
import { sha256 } from '../fixtures/content.js';
import { isLocalHostName, isPublicAddress } from '../../src/upstream/address-policy.js';
import { startFixtureUpstream, type FixtureUpstream } from '../fixtures/upstream.js';
import { startMirror, type StartMirrorOptions, type TestMirror } from '../helpers/mirror.js';

const OCI_ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json';

async function fixture(t: Test): Promise<FixtureUpstream> {
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  return up;
}

async function mirror(t: Test, options: StartMirrorOptions = {}): Promise<TestMirror> {
  const m = await startMirror(options);
  t.teardown(() => m.close());
  return m;
}

interface OciReply {
  status: number;
  code: string | undefined;
  contentType: string | null;
  ms: number;
}

/** GET a mirror path and decode the OCI error body (code undefined when the body is not one). */
async function get(url: string, headers: Record<string, string> = {}): Promise<OciReply> {
  const started = performance.now();
  const res = await fetch(url, { headers: { accept: OCI_ACCEPT, ...headers }, signal: AbortSignal.timeout(20_000) });
  const text = await res.text();
  let code: string | undefined;
  try {
    const doc = JSON.parse(text) as { errors?: { code?: unknown; message?: unknown }[] };
    const first = doc.errors?.[0];
    if (first && typeof first.code === 'string' && typeof first.message === 'string') code = first.code;
  } catch {
    code = undefined;
  }
  return { status: res.status, code, contentType: res.headers.get('content-type'), ms: performance.now() - started };
}

/**
 * Host names that resolve only to non-public addresses here: this machine's own name (and `runsc`/`vm` in
 * some sandboxes) resolves to 127.0.0.x through /etc/hosts, and nothing in the name says "local".
 */
async function namesResolvingToLoopback(): Promise<string[]> {
  const candidates = [...new Set([hostname(), 'ip6-localhost', 'ip6-loopback', 'runsc', 'vm'])];
  const names: string[] = [];
  for (const name of candidates) {
    if (isLocalHostName(name) || !/^[a-z0-9-]+(\.[a-z0-9-]+)*$/i.test(name)) continue;
    const addrs = await lookup(name, { all: true }).catch(() => []);
    if (addrs.length > 0 && addrs.every((a) => !isPublicAddress(a.address))) names.push(name.toLowerCase());
  }
  return names;
}

function assertRefused(t: Test, r: OciReply, what: string): void {
  t.ok(
    (r.status === 403 && r.code === 'DENIED') || (r.status === 404 && r.code === 'NAME_UNKNOWN'),
    `${what}: refused with 403 DENIED / 404 NAME_UNKNOWN (got ${r.status} ${r.code ?? 'non-OCI body'})`,
  );
  t.match(r.contentType ?? '', /application\/json/, `${what}: JSON error body`);
}

t.test('isPublicAddress refuses private, loopback, link-local, CGNAT, ULA and v4-mapped loopback, and accepts public ones', async (t) => {
  const notPublic = [
    '10.0.0.1',
    '10.255.255.255',
    '172.16.0.1',
    '172.31.255.254',
    '192.168.1.1',
    '100.64.0.1',
    '100.127.255.255',
    '127.0.0.1',
    '127.1.2.3',
    '169.254.169.254',
    '0.0.0.0',
    '::1',
    '[::1]',
    '::',
    'fc00::1',
    'fd12:3456::1',
    'fe80::1',
    '::ffff:127.0.0.1',
    '::ffff:10.0.0.1',
    '::ffff:169.254.169.254',
    'localhost',
    'not-an-ip',
    '',
  ];
  for (const a of notPublic) t.equal(isPublicAddress(a), false, `${a || '(empty)'} is not public`);
  const publicOnes = [
    '8.8.8.8',
    '1.1.1.1',
    '172.32.0.1',
    '100.128.0.1',
    '2606:4700:4700::1111',
    '::ffff:8.8.8.8',
    '[2001:4860:4860::8888]',
  ];
  for (const a of publicOnes) t.equal(isPublicAddress(a), true, `${a} is public`);
});

t.test('isPublicAddress checks IPv6 forms that embed an IPv4 address as that address', async (t) => {
  const notPublic = [
    '::127.0.0.1', // IPv4-compatible ::/96
    '::7f00:1',
    '::10.0.0.1',
    '::ffff:7f00:1', // IPv4-mapped, hex spelling
    '::ffff:0:127.0.0.1', // IPv4-translated ::ffff:0:0:0/96
    '64:ff9b::127.0.0.1', // NAT64 64:ff9b::/96
    '64:ff9b::a9fe:a9fe', // NAT64 of 169.254.169.254
    '64:ff9b::c0a8:101',
    '2002:7f00:1::1', // 6to4 of 127.0.0.1
    '2002:a9fe:a9fe::', // 6to4 of 169.254.169.254
    '2002:0a00:0001:1::5',
    '2001:0:a9fe:a9fe::1', // Teredo, server 169.254.169.254
    '2001:0:808:808::80ff:fefe', // Teredo, client 127.0.1.1 (stored inverted)
    'fec0::1', // site-local
    'fe80::1%eth0', // with a zone
  ];
  for (const a of notPublic) t.equal(isPublicAddress(a), false, `${a} is not public`);
  const publicOnes = ['::8.8.8.8', '64:ff9b::8.8.8.8', '2002:808:808::1', '2001:0:808:808::f7f7:f7f7', '2001:4860:4860::8888'];
  for (const a of publicOnes) t.equal(isPublicAddress(a), true, `${a} is public`);
});

t.test('open mirroring refuses ?ns= naming an IPv6 address that embeds a loopback, private or metadata IPv4 address', async (t) => {
  const up = await fixture(t);
  const m = await mirror(t, { allowUnlisted: true });
  for (const ip of ['::127.0.0.1', '64:ff9b::7f00:1', '64:ff9b::a9fe:a9fe', '2002:7f00:1::1', '2002:a00:1::1', '2001:0:a9fe:a9fe::1']) {
    const ns = `[${ip}]:${up.port}`;
    const r = await get(`${m.url}/v2/x/app/manifests/v1?ns=${encodeURIComponent(ns)}`);
    t.equal(r.status, 403, `ns=${ns}: 403`);
    t.equal(r.code, 'DENIED', `ns=${ns}: DENIED`);
    t.ok(r.ms < 5000, `ns=${ns}: answered without a dial attempt (${Math.round(r.ms)} ms)`);
  }
  t.equal(up.requests.length, 0, 'the fixture received no request');
});

t.test('isLocalHostName recognizes localhost names whatever their case and trailing dot', async (t) => {
  for (const h of ['localhost', 'LOCALHOST', 'localhost.', 'foo.localhost', 'localhost.localdomain']) t.equal(isLocalHostName(h), true, h);
  for (const h of ['example.com', 'localhost.example.com', 'notlocalhost']) t.equal(isLocalHostName(h), false, h);
});

t.test('open mirroring refuses ?ns= naming a loopback IP and never contacts it', async (t) => {
  const up = await fixture(t);
  up.addImage('x/app', { tag: 'v1' });
  const m = await mirror(t, { allowUnlisted: true });
  const paths = [
    `/v2/x/app/manifests/v1?ns=127.0.0.1:${up.port}`,
    `/v2/x/app/blobs/sha256:${'a'.repeat(64)}?ns=127.0.0.1:${up.port}`,
    `/v2/x/app/tags/list?ns=127.0.0.1:${up.port}`,
    `/v2/x/app/referrers/sha256:${'a'.repeat(64)}?ns=127.0.0.1:${up.port}`,
  ];
  for (const p of paths) assertRefused(t, await get(`${m.url}${p}`), p);
  t.equal(up.requests.length, 0, 'the fixture on 127.0.0.1 received no request');
});

t.test('open mirroring refuses the cloud metadata address 169.254.169.254', async (t) => {
  const m = await mirror(t, { allowUnlisted: true });
  for (const ns of ['169.254.169.254', '169.254.169.254:80']) {
    const r = await get(`${m.url}/v2/latest/meta-data/manifests/v1?ns=${ns}`);
    assertRefused(t, r, `ns=${ns}`);
    t.ok(r.ms < 5000, `ns=${ns} answered at once (${Math.round(r.ms)} ms), no dial attempt`);
  }
});

t.test('open mirroring refuses ?ns=localhost:PORT and never contacts it', async (t) => {
  const up = await fixture(t);
  up.addImage('x/app', { tag: 'v1' });
  const m = await mirror(t, { allowUnlisted: true });
  for (const ns of [`localhost:${up.port}`, `LOCALHOST:${up.port}`, `app.localhost:${up.port}`, `localhost.localdomain:${up.port}`]) {
    assertRefused(t, await get(`${m.url}/v2/x/app/manifests/v1?ns=${ns}`), `ns=${ns}`);
  }
  t.equal(up.requests.length, 0, 'the fixture received no request');
});

t.test('open mirroring refuses ?ns=[::1]:PORT and other IPv6 non-public literals', async (t) => {
  const up = await fixture(t);
  const m = await mirror(t, { allowUnlisted: true });
  for (const ns of [`[::1]:${up.port}`, '[::1]', '[fe80::1]:5000', '[fd00::1]:5000', '[::ffff:127.0.0.1]:5000', '[::ffff:7f00:1]:5000']) {
    assertRefused(t, await get(`${m.url}/v2/x/app/manifests/v1?ns=${encodeURIComponent(ns)}`), `ns=${ns}`);
  }
  t.equal(up.requests.length, 0, 'the fixture received no request');
});

t.test('open mirroring refuses a private IP as the path prefix (/v2/127.0.0.1:PORT/x/...)', async (t) => {
  const up = await fixture(t);
  up.addImage('x/app', { tag: 'v1' });
  const m = await mirror(t, { allowUnlisted: true });
  for (const p of [
    `/v2/127.0.0.1:${up.port}/x/app/manifests/v1`,
    `/v2/localhost:${up.port}/x/app/manifests/v1`,
    `/v2/10.0.0.1/x/app/manifests/v1`,
    `/v2/192.168.0.10:5000/x/app/blobs/sha256:${'b'.repeat(64)}`,
    `/v2/127.0.0.1:${up.port}/x/app/tags/list`,
  ]) {
    assertRefused(t, await get(`${m.url}${p}`), p);
  }
  t.equal(up.requests.length, 0, 'the fixture received no request');
});

t.test('open mirroring refuses an X-Registry header naming a loopback address', async (t) => {
  const up = await fixture(t);
  const m = await mirror(t, { allowUnlisted: true });
  assertRefused(t, await get(`${m.url}/v2/x/app/manifests/v1`, { 'x-registry': `127.0.0.1:${up.port}` }), 'X-Registry');
  t.equal(up.requests.length, 0, 'the fixture received no request');
});

t.test('open mirroring refuses alternative spellings of 127.0.0.1 (decimal, hex, octal, short form) and never contacts them', async (t) => {
  // isIP() says these are not IP literals, but getaddrinfo/inet_aton turns each into 127.0.0.1.
  const up = await fixture(t);
  up.addImage('x/app', { tag: 'v1' });
  const m = await mirror(t, { allowUnlisted: true });
  for (const spelling of ['2130706433', '0x7f000001', '0177.0.0.1', '127.1', '127.0.1']) {
    const r = await get(`${m.url}/v2/x/app/manifests/v1?ns=${spelling}:${up.port}`);
    assertRefused(t, r, `ns=${spelling}:${up.port}`);
    t.ok(r.status >= 400 && r.status < 500, `ns=${spelling}: a client error, not an upstream failure (${r.status})`);
  }
  t.equal(up.requests.length, 0, 'the fixture received no request');
});

t.test('open mirroring refuses a host name that resolves to loopback (connect-time guard) and never contacts it', async (t) => {
  // Nothing in such a name says "local": only the resolved address can refuse it.
  const loopbackNames = await namesResolvingToLoopback();
  if (loopbackNames.length === 0) {
    t.comment('no host name on this machine resolves to a non-public address: nothing to check');
    return;
  }
  const up = await fixture(t);
  up.addImage('x/app', { tag: 'v1' });
  const m = await mirror(t, { allowUnlisted: true });
  for (const name of loopbackNames) {
    const r = await get(`${m.url}/v2/x/app/manifests/v1?ns=${name.toLowerCase()}:${up.port}`);
    t.equal(r.status, 403, `ns=${name}:${up.port} (resolves to a non-public address): 403`);
    t.equal(r.code, 'DENIED', `ns=${name}:${up.port}: DENIED`);
    const viaPath = await get(`${m.url}/v2/${name.toLowerCase()}:${up.port}/x/app/manifests/v1`);
    t.equal(viaPath.status, 403, `/v2/${name}:${up.port}/...: 403`);
    t.equal(viaPath.code, 'DENIED', `/v2/${name}:${up.port}/...: DENIED`);
  }
  t.equal(up.requests.length, 0, 'the fixture received no request');
});

t.test('an explicitly configured loopback namespace is mirrored, also with open mirroring on', async (t) => {
  const up = await fixture(t);
  const img = up.addImage('x/app', { tag: 'v1' });
  for (const allowUnlisted of [false, true]) {
    const m = await mirror(t, { allowUnlisted, upstreams: [{ namespace: up.host, host: up.host }] });
    const res = await fetch(`${m.url}/v2/x/app/manifests/v1?ns=${up.host}`, { headers: { accept: OCI_ACCEPT } });
    t.equal(res.status, 200, `allowUnlisted=${allowUnlisted}: ?ns= pull of a configured loopback upstream works`);
    t.equal(res.headers.get('docker-content-digest'), img.digest);
    await res.arrayBuffer();
    const viaPath = await fetch(`${m.url}/v2/${up.host}/x/app/manifests/v1`, { headers: { accept: OCI_ACCEPT } });
    t.equal(viaPath.status, 200, `allowUnlisted=${allowUnlisted}: path-prefix pull works`);
    await viaPath.arrayBuffer();
  }
  t.ok(up.requests.length > 0, 'the configured fixture was contacted');
});

t.test('with a config file, an unlisted public namespace is 404 NAME_UNKNOWN and nothing is dialled', async (t) => {
  const up = await fixture(t);
  const m = await mirror(t, { upstreams: [{ namespace: up.host, host: up.host }] });
  for (const p of [
    '/v2/library/nginx/manifests/latest?ns=ghcr.io',
    '/v2/ghcr.io/library/nginx/manifests/latest',
    '/v2/library/nginx/manifests/latest?ns=8.8.8.8',
  ]) {
    const r = await get(`${m.url}${p}`);
    t.equal(r.status, 404, `${p}: 404`);
    t.equal(r.code, 'NAME_UNKNOWN', `${p}: NAME_UNKNOWN`);
    t.ok(r.ms < 2000, `${p}: answered without dialling (${Math.round(r.ms)} ms)`);
  }
  // Blob requests for an unlisted namespace are refused the same way.
  const blob = await get(`${m.url}/v2/library/nginx/blobs/sha256:${'c'.repeat(64)}?ns=ghcr.io`);
  t.equal(blob.status, 404);
  t.equal(blob.code, 'NAME_UNKNOWN');
  t.equal(up.requests.length, 0);
});

t.test(
  'refused namespaces get one answer whatever the reason (private IP, localhost, resolves to loopback, does not resolve); only the log tells them apart',
  async (t) => {
    // Different answers would let a client map the internal DNS: which names exist, which are private.
    const lines: string[] = [];
    const log = createLogger('info', new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) }));
    const m = await mirror(t, { allowUnlisted: true, log });
    const loopback = (await namesResolvingToLoopback())[0];
    if (loopback === undefined) t.comment('no host name here resolves to loopback: that case is not covered');
    const namespaces = [
      '10.1.2.3:5000',
      '[fd00::1]:5000',
      'localhost:5000',
      'no-such-registry.invalid',
      'no-such-registry.invalid:5000',
      ...(loopback ? [`${loopback}:5000`] : []),
    ];
    const answers: { status: number; code: unknown; message: unknown }[] = [];
    for (const ns of namespaces) {
      const res = await fetch(`${m.url}/v2/x/app/manifests/v1?ns=${encodeURIComponent(ns)}`, { signal: AbortSignal.timeout(20_000) });
      const text = await res.text();
      const entry = (JSON.parse(text) as { errors: { code: unknown; message: unknown; detail: unknown }[] }).errors[0];
      t.same(entry?.detail, { namespace: ns }, `ns=${ns}: the detail names only the namespace`);
      t.notMatch(text, /ENOTFOUND|EAI_|127\.0\.|resolves to|lookup|private|local host/i, `ns=${ns}: the body gives no reason`);
      answers.push({ status: res.status, code: entry?.code, message: entry?.message });
    }
    for (const [i, a] of answers.entries())
      t.same(a, answers[0], `ns=${namespaces[i] ?? ''}: the same status, code and message as ns=${namespaces[0] ?? ''}`);
    t.same(answers[0], { status: 403, code: 'DENIED', message: answers[0]?.message });
    const logged = lines.join('');
    t.match(logged, /no-such-registry\.invalid: DNS lookup failed/, 'the log has the DNS failure');
    t.match(logged, /10\.1\.2\.3 is not a public address/, 'the log has the non-public address');
    if (loopback) t.match(logged, /resolves to non-public address 127\./, 'the log has the loopback resolution');
  },
);

t.test('an unlisted namespace whose name stops resolving still serves its cached tag stale (a DNS outage is an outage)', async (t) => {
  const m = await mirror(t, { allowUnlisted: true });
  const ns = 'no-such-registry.invalid';
  const bytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${'a'.repeat(64)}`, size: 2 },
      layers: [],
    }),
  );
  const digest = sha256(bytes);
  const longAgo = new Date(Date.now() - 365 * 86_400_000);
  // As left by pulls from when the name still resolved; the tag is long past manifest_invalidation_time.
  await m.storage.putManifest(digest, { mediaType: 'application/vnd.oci.image.manifest.v1+json', bytes, fetchedAt: longAgo });
  await m.storage.putTag({ namespace: ns, repository: 'x/app' }, 'v1', {
    digest,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    size: bytes.length,
    checkedAt: longAgo,
  });
  const res = await fetch(`${m.url}/v2/x/app/manifests/v1?ns=${ns}`, { headers: { accept: OCI_ACCEPT } });
  t.equal(res.status, 200, 'served from the cache');
  t.equal(res.headers.get('docker-content-digest'), digest);
  t.match(res.headers.get('warning') ?? '', /110/, 'marked stale');
  await res.arrayBuffer();
  const uncached = await get(`${m.url}/v2/x/other/manifests/v1?ns=${ns}`);
  t.same({ status: uncached.status, code: uncached.code }, { status: 403, code: 'DENIED' }, 'without a cached copy: the one refusal');
});
