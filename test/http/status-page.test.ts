/**
 * The status page (`GET /`) and its JSON twin (`GET /status.json`), over real sockets: what they show
 * after real pulls through the mirror, escaping of names and messages, client_auth, paging limits and
 * turning the page off.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import t, { type Test } from 'tap';
import { resolveCacheSize } from '../../src/lifecycle/collector/cache-size.js';
import { OciError } from '../../src/oci/errors.js';
import type { DownloadStatus, StatusSnapshot } from '../../src/status/types.js';
import { FilesystemStorage } from '../../src/storage/filesystem/filesystem-storage.js';
import type { RepositoryRef, Storage } from '../../src/storage/storage.js';
import { randomBytesSeeded } from '../fixtures/content.js';
import { startFixtureUpstream, type AddedImage, type FixtureUpstream } from '../fixtures/upstream.js';
import { eventually } from '../helpers/eventually.js';
import { startMirror, type StartMirrorOptions, type TestMirror } from '../helpers/mirror.js';

const OCI_ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json';
const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;

async function withUpstream(t: Test): Promise<FixtureUpstream> {
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  return up;
}

async function withMirror(t: Test, options: StartMirrorOptions): Promise<TestMirror> {
  const m = await startMirror(options);
  t.teardown(() => m.close());
  return m;
}

/** Pulls an image through the mirror as a client would: manifest by tag, then config and layers. */
async function pull(
  m: TestMirror,
  ns: string,
  repo: string,
  tag: string,
  img: AddedImage,
  headers: Record<string, string> = {},
): Promise<void> {
  const r = await fetch(`${m.url}/v2/${repo}/manifests/${tag}?ns=${ns}`, { headers: { accept: OCI_ACCEPT, ...headers } });
  if (r.status !== 200) throw new Error(`manifest: ${r.status}`);
  await r.arrayBuffer();
  for (const d of [img.configDigest, ...img.layerDigests]) {
    const b = await fetch(`${m.url}/v2/${repo}/blobs/${d}?ns=${ns}`, { headers });
    if (b.status !== 200) throw new Error(`blob ${d}: ${b.status}`);
    await b.arrayBuffer();
  }
}

async function json(m: TestMirror, query = '', headers: Record<string, string> = {}): Promise<StatusSnapshot> {
  const r = await fetch(`${m.url}/status.json${query}`, { headers });
  if (r.status !== 200) throw new Error(`status.json: ${r.status} ${await r.text()}`);
  return (await r.json()) as StatusSnapshot;
}

async function page(
  m: TestMirror,
  query = '',
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; body: string }> {
  const r = await fetch(`${m.url}/${query}`, { headers });
  return { status: r.status, headers: r.headers, body: await r.text() };
}

async function htpasswd(user: string, password: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'status-htpasswd-'));
  const file = join(dir, 'htpasswd');
  await writeFile(file, `${user}:${bcrypt.hashSync(password, 4).replace(/^\$2b\$/, '$2y$')}\n`);
  return file;
}

t.test('the page renders its sections as HTML after a pull', async (t) => {
  const up = await withUpstream(t);
  const img = up.addImage('team/app', { tag: 'v1' });
  const m = await withMirror(t, { upstreams: [{ namespace: 'registry.example', host: up.host }] });
  await pull(m, 'registry.example', 'team/app', 'v1', img);
  await m.settled();

  const res = await page(m);
  t.equal(res.status, 200);
  t.match(res.headers.get('content-type') ?? '', /^text\/html; charset=utf-8/);
  t.equal(res.headers.get('cache-control'), 'no-store');
  for (const id of ['cache', 'traffic', 'downloads', 'upstreams', 'repositories'])
    t.match(res.body, `<section id="${id}"`, `section ${id}`);
  t.match(res.body, 'registry.example/team/app', 'the cached repository');
  t.match(res.body, '<strong>v1</strong>', 'its tag');
  t.match(res.body, img.digest.slice(0, 19), 'its digest, shortened');
  t.match(res.body, `http://${up.host}`, 'the upstream it came from');
  t.match(res.body, "document.getElementById('live')", "the page's own script is inserted as it is");
  t.match(res.body, ':root { color-scheme: light dark;', 'so is its style');
});

t.test('a cache size in percent is measured on the filesystem cache directory the storage names (localRoot)', async (t) => {
  const m = await withMirror(t, { lifecycle: { maxCacheSize: { kind: 'percent', percent: 50 }, gcIntervalMs: 0 } });
  const s = await json(m);
  t.equal(s.cache.limitBytes, await resolveCacheSize({ kind: 'percent', percent: 50 }, m.root));
});

t.test('the JSON twin reports a pull: tag, sizes, hit ratio, bytes by source, upstream success', async (t) => {
  const up = await withUpstream(t);
  const layer = randomBytesSeeded(100_000, 7);
  const img = up.addImage('team/app', { tag: 'v1', layers: [layer] });
  const m = await withMirror(t, {
    upstreams: [{ namespace: 'registry.example', host: up.host }],
    lifecycle: { maxCacheSize: { kind: 'bytes', bytes: 10 * 1024 * 1024 }, gcIntervalMs: 0 },
  });
  await pull(m, 'registry.example', 'team/app', 'v1', img); // misses
  await m.settled();
  await pull(m, 'registry.example', 'team/app', 'v1', img); // hits
  const s = await json(m);

  const configSize = (img.manifest['config'] as { size: number }).size;
  t.same(
    s.repositories.rows.map((r) => [r.namespace, r.repository, r.tag, r.digest]),
    [['registry.example', 'team/app', 'v1', img.digest]],
  );
  const row = s.repositories.rows[0];
  t.equal(row?.size, img.bytes.length + configSize + layer.length, 'manifest + config + layer, as ls counts');
  t.equal(row?.blobs, 2);
  t.equal(row?.missingBlobs, 0);
  t.ok(row?.lastAccess && Date.now() - Date.parse(row.lastAccess) < 60_000, "last access: this process's, before any flush");
  t.equal(s.repositories.next, null);
  t.equal(s.cache.blobBytes, configSize + layer.length);
  t.equal(s.cache.blobs, 2);
  t.equal(s.cache.manifests, 1);
  t.equal(s.cache.limitBytes, 10 * 1024 * 1024);
  t.equal(s.cache.lowWaterBytes, 9 * 1024 * 1024, 'the default low water, 90 %');
  t.equal(s.traffic.lookups['miss'], 3, 'first pull: manifest, config, layer');
  t.equal(s.traffic.lookups['hit'], 3, 'second pull');
  t.equal(s.traffic.hitRatio, 0.5);
  t.equal(s.traffic.bytesFromCache, img.bytes.length + configSize + layer.length);
  t.equal(s.traffic.bytesFromUpstream, img.bytes.length + configSize + layer.length);
  const u = s.upstreams.find((x) => x.namespace === 'registry.example');
  t.ok(u, 'the configured upstream is listed');
  t.equal(u?.host, up.host);
  t.match(u?.lastSuccess?.message ?? '', /HTTP 200/);
  t.equal(u?.lastError, null);
  t.same(s.downloads, { running: [], waiting: 0 });
});

t.test('a download in progress is listed with bytes received and size, and leaves the list when done', async (t) => {
  const up = await withUpstream(t);
  const layer = randomBytesSeeded(512 * 1024, 11);
  const img = up.addImage('team/slow', { tag: 'v1', layers: [layer] });
  const digest = img.layerDigests[0] as string;
  up.setBlobFault(digest, { kind: 'slow', chunkSize: 32 * 1024, delayMs: 100 });
  const m = await withMirror(t, { upstreams: [{ namespace: 'registry.example', host: up.host }] });

  const body = fetch(`${m.url}/v2/team/slow/blobs/${digest}?ns=registry.example`).then((r) => r.arrayBuffer());
  let seen: DownloadStatus | undefined;
  const listed = await eventually(async () => {
    seen = (await json(m, '?n=0')).downloads.running.find((x) => x.digest === digest);
    return seen !== undefined && seen.receivedBytes > 0;
  });
  t.ok(listed, 'listed while it runs');
  if (!seen) return;
  t.equal(seen.namespace, 'registry.example');
  t.equal(seen.sizeBytes, layer.length);
  t.ok(seen.receivedBytes > 0 && seen.receivedBytes < layer.length, `part received: ${seen.receivedBytes}`);
  t.equal(seen.state, 'downloading');
  const html = (await page(m, '?n=0')).body;
  t.match(html, `<tr class="download" data-digest="${digest}">`);
  t.match(html, `<progress max="${layer.length}" value="`);

  t.equal((await body).byteLength, layer.length);
  await m.settled();
  t.same((await json(m, '?n=0')).downloads.running, []);
});

t.test('repository and tag names from the cache are escaped in the HTML', async (t) => {
  const up = await withUpstream(t);
  const m = await withMirror(t, { upstreams: [{ namespace: 'registry.example', host: up.host }] });
  // Names no client could pull, but a shared or imported cache may hold anything: the page must not care.
  const repo: RepositoryRef = { namespace: 'registry.example', repository: 'evil<script>alert(1)</script>' };
  await m.storage.putTag(repo, '<img src=x onerror=alert(2)>', {
    digest: 'sha256:"><img src=x onerror=alert(3)>',
    mediaType: 'text/html',
    size: 1,
    checkedAt: new Date(),
  });

  const res = await page(m);
  t.equal(res.status, 200);
  t.notMatch(res.body, /<script>alert/, 'no script element from a repository name');
  t.notMatch(res.body, /<img/i, 'no img element from a tag or digest');
  t.match(res.body, 'evil&lt;script&gt;alert(1)&lt;/script&gt;');
  t.match(res.body, '&lt;img src=x onerror=alert(2)&gt;');
  t.match(res.body, 'title="sha256:&quot;&gt;&lt;img src=x onerror=alert(3)&gt;"', 'attribute values are escaped too');
  // The only script is the page's own, and only it may run.
  t.equal(res.body.match(/<script/g)?.length, 1);
  const nonce = /<script nonce="([^"]+)">/.exec(res.body)?.[1];
  t.ok(nonce);
  t.match(res.headers.get('content-security-policy') ?? '', `script-src 'nonce-${nonce}'`);

  const j = await fetch(`${m.url}/status.json`);
  t.equal(j.headers.get('content-type'), 'application/json; charset=utf-8');
  t.equal(j.headers.get('x-content-type-options'), 'nosniff', 'the JSON is never sniffed as HTML');
  const s = (await j.json()) as StatusSnapshot;
  t.equal(s.repositories.rows[0]?.tag, '<img src=x onerror=alert(2)>', 'JSON carries the name as it is');
});

t.test('an upstream error text is escaped in the HTML', async (t) => {
  const up = await withUpstream(t);
  const m = await withMirror(t, { upstreams: [{ namespace: 'registry.example', host: up.host }] });
  m.server.upstreamHealth?.onError(
    'registry.example',
    'manifest',
    'UPSTREAM_ERROR',
    up.host,
    new OciError('UPSTREAM_ERROR', '<script>alert(1)</script>', { detail: { reason: '"><img src=x onerror=alert(2)>' } }),
  );
  const res = await page(m);
  t.notMatch(res.body, /<script>alert/);
  t.notMatch(res.body, /<img/i);
  t.match(res.body, 'manifest: &lt;script&gt;alert(1)&lt;/script&gt; (&quot;&gt;&lt;img src=x onerror=alert(2)&gt;)');
});

t.test('an upstream failure shows as its last error, and a later success as its last success', async (t) => {
  const up = await withUpstream(t);
  const img = up.addImage('team/app', { tag: 'v1' });
  const m = await withMirror(t, { upstreams: [{ namespace: 'registry.example', host: up.host, connectTimeoutMs: 2000 }] });
  await up.stop();
  const failed = await fetch(`${m.url}/v2/team/app/manifests/v1?ns=registry.example`, { headers: { accept: OCI_ACCEPT } });
  t.ok(failed.status >= 500);
  let u = (await json(m, '?n=0')).upstreams.find((x) => x.namespace === 'registry.example');
  t.match(u?.lastError?.message ?? '', /^manifest: upstream unreachable \(ECONNREFUSED\)$/);
  t.equal(u?.lastSuccess, null);
  t.match((await page(m, '?n=0')).body, /<tr class="upstream failing" data-namespace="registry.example">/);

  await up.start();
  await pull(m, 'registry.example', 'team/app', 'v1', img);
  u = (await json(m, '?n=0')).upstreams.find((x) => x.namespace === 'registry.example');
  t.match(u?.lastSuccess?.message ?? '', /HTTP 200/);
  t.ok((u?.lastSuccess?.at ?? '') >= (u?.lastError?.at ?? ''), 'the success is the newer');
  t.match((await page(m, '?n=0')).body, /<tr class="upstream" data-namespace="registry.example">/, 'no longer marked failing');
});

t.test('an upstream that refuses the mirror (5xx, 429, 401) counts as an error, a 404 does not', async (t) => {
  const up = await withUpstream(t);
  up.addImage('team/app', { tag: 'v1' });
  const m = await withMirror(t, { upstreams: [{ namespace: 'registry.example', host: up.host }] });
  up.setManifestFault('team/app', 'v1', { kind: 'status', status: 503 });
  await (await fetch(`${m.url}/v2/team/app/manifests/v1?ns=registry.example`, { headers: { accept: OCI_ACCEPT } })).arrayBuffer();
  let u = (await json(m, '?n=0')).upstreams[0];
  t.match(u?.lastError?.message ?? '', /HTTP 503/);
  t.equal(u?.lastSuccess, null);
  await (await fetch(`${m.url}/v2/team/app/manifests/nope?ns=registry.example`, { headers: { accept: OCI_ACCEPT } })).arrayBuffer();
  u = (await json(m, '?n=0')).upstreams[0];
  t.match(u?.lastSuccess?.message ?? '', /HTTP 404/, 'the upstream answered: it is up');
});

t.test('when every namespace has client_auth the page and its JSON require credentials', async (t) => {
  const up = await withUpstream(t);
  const file = await htpasswd('alice', 's3cret');
  const m = await withMirror(t, {
    upstreams: [
      { namespace: 'one.example', host: up.host, clientAuthFile: file },
      { namespace: 'two.example', host: up.host, clientAuthFile: file },
    ],
  });
  for (const path of ['/', '/status.json', '/?n=0']) {
    const anon = await fetch(`${m.url}${path}`);
    t.equal(anon.status, 401, `${path} without credentials`);
    t.match(anon.headers.get('www-authenticate') ?? '', /^Basic realm="oci-registry"/, 'a browser asks for a login');
    t.equal(((await anon.json()) as { errors: { code: string }[] }).errors[0]?.code, 'UNAUTHORIZED');
    const wrong = await fetch(`${m.url}${path}`, { headers: { authorization: basic('alice', 'nope') } });
    t.equal(wrong.status, 401, `${path} with a wrong password`);
    await wrong.arrayBuffer();
    const ok = await fetch(`${m.url}${path}`, { headers: { authorization: basic('alice', 's3cret') } });
    t.equal(ok.status, 200, `${path} with valid credentials`);
    await ok.arrayBuffer();
  }
});

t.test('with an open namespace the page is open, but protected namespaces show only with their credentials', async (t) => {
  const up = await withUpstream(t);
  const img = up.addImage('team/app', { tag: 'v1' });
  const file = await htpasswd('alice', 's3cret');
  const m = await withMirror(t, {
    upstreams: [
      { namespace: 'private.example', host: up.host, clientAuthFile: file },
      { namespace: 'public.example', host: up.host },
    ],
  });
  await pull(m, 'public.example', 'team/app', 'v1', img);
  await pull(m, 'private.example', 'team/app', 'v1', img, { authorization: basic('alice', 's3cret') });
  await m.settled();

  const anon = await page(m);
  t.equal(anon.status, 200, 'open: not every namespace is protected');
  t.match(anon.body, 'public.example/team/app');
  t.notMatch(anon.body, 'private.example', 'neither its repositories nor its upstream row');
  t.match(anon.body, 'href="/?login=1"', 'offers to sign in');
  const anonJson = await json(m);
  t.same(
    anonJson.repositories.rows.map((r) => r.namespace),
    ['public.example'],
  );
  t.same(
    anonJson.upstreams.map((u) => u.namespace),
    ['public.example'],
  );

  const login = await fetch(`${m.url}/?login=1`);
  t.equal(login.status, 401, '?login asks for credentials');
  t.match(login.headers.get('www-authenticate') ?? '', /Basic/);

  const authed = await json(m, '', { authorization: basic('alice', 's3cret') });
  t.same(
    authed.repositories.rows.map((r) => r.namespace),
    ['private.example', 'public.example'],
  );
  t.same(
    authed.upstreams.map((u) => [u.namespace, u.clientAuth]),
    [
      ['private.example', true],
      ['public.example', false],
    ],
  );
});

t.test('a download through a protected namespace is not shown to anonymous viewers', async (t) => {
  const up = await withUpstream(t);
  const img = up.addImage('team/slow', { tag: 'v1', layers: [randomBytesSeeded(256 * 1024, 5)] });
  const digest = img.layerDigests[0] as string;
  up.setBlobFault(digest, { kind: 'slow', chunkSize: 16 * 1024, delayMs: 100 });
  const file = await htpasswd('alice', 's3cret');
  const m = await withMirror(t, {
    upstreams: [
      { namespace: 'private.example', host: up.host, clientAuthFile: file },
      { namespace: 'public.example', host: up.host },
    ],
  });
  const auth = { authorization: basic('alice', 's3cret') };
  const body = fetch(`${m.url}/v2/team/slow/blobs/${digest}?ns=private.example`, { headers: auth }).then((r) => r.arrayBuffer());
  t.ok(await eventually(async () => (await json(m, '?n=0', auth)).downloads.running.length === 1), 'listed with credentials');
  t.same((await json(m, '?n=0')).downloads.running, [], 'anonymous: hidden');
  t.notMatch((await page(m, '?n=0')).body, digest);
  await body;
});

t.test('the repository listing is paged: n rows, a next cursor, n capped, bad n refused', async (t) => {
  const up = await withUpstream(t);
  const m = await withMirror(t, {
    upstreams: [
      { namespace: 'registry.example', host: up.host },
      { namespace: '127.0.0.1:5000', host: up.host },
    ],
  });
  const record = {
    digest: `sha256:${'a'.repeat(64)}`,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    size: 2,
    checkedAt: new Date(),
  };
  for (const tag of ['a', 'b', 'c']) await m.storage.putTag({ namespace: 'registry.example', repository: 'x/one' }, tag, record);
  for (const tag of ['1', '2']) await m.storage.putTag({ namespace: 'registry.example', repository: 'x/two' }, tag, record);
  await m.storage.putTag({ namespace: '127.0.0.1:5000', repository: 'app' }, 'latest', record);

  const names = (s: StatusSnapshot) => s.repositories.rows.map((r) => `${r.namespace}/${r.repository}:${r.tag}`);
  const seen: string[] = [];
  let after: string | null = '';
  let pages = 0;
  while (after !== null) {
    const s = await json(m, `?n=2${after ? `&last=${encodeURIComponent(after)}` : ''}`);
    t.ok(s.repositories.rows.length <= 2);
    seen.push(...names(s));
    after = s.repositories.next;
    pages++;
  }
  t.same(seen, [
    '127.0.0.1:5000/app:latest',
    'registry.example/x/one:a',
    'registry.example/x/one:b',
    'registry.example/x/one:c',
    'registry.example/x/two:1',
    'registry.example/x/two:2',
  ]);
  t.equal(pages, 3);

  const html = (await page(m, '?n=2')).body;
  t.match(html, 'href="/?n=2&amp;last=registry.example%2Fx%2Fone%3Aa"', 'the Next link carries the cursor');
  t.equal((await json(m, '?n=1000000')).repositories.limit, 200, 'n is capped');
  t.equal((await json(m)).repositories.limit, 50, 'default page size');
  const bad = await fetch(`${m.url}/status.json?n=-1`);
  t.equal(bad.status, 400);
  t.equal(((await bad.json()) as { errors: { code: string }[] }).errors[0]?.code, 'PAGINATION_NUMBER_INVALID');
});

t.test('a page reads only the tag records it shows; the live refresh (n=0) reads none', async (t) => {
  const up = await withUpstream(t);
  const root = await mkdtemp(join(tmpdir(), 'status-count-'));
  const fs = new FilesystemStorage(root);
  const calls = { getTag: 0, listTags: 0, listRepositories: 0 };
  // Counts the storage calls the page makes.
  const storage = new Proxy(fs, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => {
        if (prop in calls) calls[prop as keyof typeof calls]++;
        return (v as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  }) as Storage;
  const m = await withMirror(t, { storage, root, upstreams: [{ namespace: 'registry.example', host: up.host }] });
  const record = {
    digest: `sha256:${'b'.repeat(64)}`,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    size: 2,
    checkedAt: new Date(),
  };
  for (let i = 0; i < 40; i++)
    await m.storage.putTag({ namespace: 'registry.example', repository: `r${String(i).padStart(2, '0')}` }, 'v1', record);
  for (let i = 0; i < 40; i++)
    await m.storage.putTag({ namespace: 'registry.example', repository: 'many' }, `t${String(i).padStart(2, '0')}`, record);

  await json(m, '?n=0'); // the first listing of the cache (sizes) is made once and reused
  calls.getTag = calls.listTags = calls.listRepositories = 0;
  await json(m, '?n=0');
  t.same(calls, { getTag: 0, listTags: 0, listRepositories: 0 }, 'live refresh: no repository listing');
  const s = await json(m, '?n=5');
  t.equal(s.repositories.rows.length, 5);
  t.equal(calls.getTag, 5, 'one tag record per row shown');
  t.ok(calls.listTags <= 2, `tag lists of the repositories on the page only (${calls.listTags})`);
});

t.test('the status page off (--no-status-page) answers 404 like any unknown path', async (t) => {
  const m = await withMirror(t, { statusPage: false });
  for (const path of ['/', '/status.json']) {
    const r = await fetch(`${m.url}${path}`);
    t.equal(r.status, 404, path);
    t.equal(((await r.json()) as { errors: { code: string }[] }).errors[0]?.code, 'NOT_FOUND');
  }
  t.equal(m.server.status, undefined);
  t.equal(m.server.upstreamHealth, undefined, 'nothing is recorded for it either');
});
