/**
 * Upstream faults, one per test: what the client sees, and that nothing corrupt is left in the cache
 * (every file under blobs/ and manifests/ hashes to its name; tmp/ is empty once the request settled).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { randomBytesSeeded, sha256 } from '../fixtures/content.js';
import { startFixtureUpstream, type FixtureUpstream } from '../fixtures/upstream.js';
import { startMirror, type TestMirror, type TestUpstream } from '../helpers/mirror.js';
import { listFiles } from '../helpers/files.js';

const MiB = 1024 * 1024;
const OCI_ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json';

interface Setup {
  up: FixtureUpstream;
  m: TestMirror;
  blobUrl(digest: string): string;
  manifestUrl(repo: string, ref: string): string;
}

async function setup(t: Test, overrides: Partial<TestUpstream> = {}): Promise<Setup> {
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  const m = await startMirror({ upstreams: [{ namespace: up.host, host: up.host, ...overrides }] });
  t.teardown(() => m.close());
  return {
    up,
    m,
    blobUrl: (digest) => `${m.url}/v2/x/app/blobs/${digest}?ns=${up.host}`,
    manifestUrl: (repo, ref) => `${m.url}/v2/${repo}/manifests/${ref}?ns=${up.host}`,
  };
}

interface Pulled {
  status: number;
  headers: Headers;
  /** The complete body, or undefined when the transfer was cut. */
  body: Buffer | undefined;
  received: number;
  error: string | undefined;
  ms: number;
}

/** GET and read the whole body; a cut transfer is reported, not thrown. */
async function pull(url: string, headers: Record<string, string> = {}, timeoutMs = 30_000): Promise<Pulled> {
  const started = performance.now();
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(timeoutMs) });
  const chunks: Buffer[] = [];
  let received = 0;
  let error: string | undefined;
  try {
    for await (const c of res.body ?? []) {
      chunks.push(Buffer.from(c as Uint8Array));
      received += (c as Uint8Array).length;
    }
  } catch (e) {
    error = (e as Error).message || String(e);
  }
  return {
    status: res.status,
    headers: res.headers,
    body: error === undefined ? Buffer.concat(chunks) : undefined,
    received,
    error,
    ms: performance.now() - started,
  };
}

function ociCode(p: Pulled): string | undefined {
  try {
    const doc = JSON.parse((p.body ?? Buffer.alloc(0)).toString('utf8')) as { errors?: { code?: string; message?: string }[] };
    const e = doc.errors?.[0];
    return e && typeof e.code === 'string' && typeof e.message === 'string' ? e.code : undefined;
  } catch {
    return undefined;
  }
}

async function hashFile(path: string, algorithm: string): Promise<string> {
  const h = createHash(algorithm);
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return h.digest('hex');
}

/** Paths under blobs/ and manifests/ whose content does not hash to their name. */
async function corruptObjects(root: string): Promise<string[]> {
  const bad: string[] = [];
  for (const file of await listFiles(join(root, 'blobs'))) {
    const [alg, , hex] = file.slice(join(root, 'blobs').length + 1).split('/');
    if (!alg || !hex || (await hashFile(file, alg)) !== hex) bad.push(file);
  }
  for (const file of await listFiles(join(root, 'manifests'))) {
    const [alg, , hex] = file.slice(join(root, 'manifests').length + 1).split('/');
    const data = await readFile(file);
    const nl = data.indexOf(0x0a);
    if (
      !alg ||
      !hex ||
      nl < 0 ||
      createHash(alg)
        .update(data.subarray(nl + 1))
        .digest('hex') !== hex
    )
      bad.push(file);
  }
  return bad;
}

/** Waits (bounded) for tmp/ to empty: a failed fill cleans up just after the client's connection is cut. */
async function tmpAfterSettle(root: string, timeoutMs = 5000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = await listFiles(join(root, 'tmp'));
    if (left.length === 0 || Date.now() > deadline) return left;
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function storedBlobs(root: string): Promise<string[]> {
  return (await listFiles(join(root, 'blobs'))).map((f) => `sha256:${f.split('/').pop() ?? ''}`);
}

async function assertCacheClean(t: Test, m: TestMirror): Promise<void> {
  t.same(await tmpAfterSettle(m.root), [], 'no file left in tmp/ once the request settled');
  t.same(await corruptObjects(m.root), [], 'every stored blob and manifest hashes to its name');
}

function blob(t: Test, up: FixtureUpstream, size: number, seed: number): { bytes: Buffer; digest: string } {
  void t;
  const bytes = randomBytesSeeded(size, seed);
  return { bytes, digest: up.addBlob(bytes) };
}

t.test('connection reset mid-body: the client transfer is cut, nothing is stored, a retry succeeds', async (t) => {
  const { up, m, blobUrl } = await setup(t);
  const { bytes, digest } = blob(t, up, 4 * MiB, 1);
  up.setBlobFault(digest, { kind: 'reset', afterBytes: MiB, times: 1 });
  const first = await pull(blobUrl(digest));
  t.ok(first.status === 200 || first.status >= 500, `status ${first.status}`);
  if (first.status === 200) {
    t.equal(first.body, undefined, 'the body never completes');
    t.ok(first.received < bytes.length, `received ${first.received} < ${bytes.length} bytes`);
  }
  t.same(await storedBlobs(m.root), [], 'nothing stored');
  await assertCacheClean(t, m);

  const retry = await pull(blobUrl(digest));
  t.equal(retry.status, 200, 'retry: 200');
  t.equal(retry.body && sha256(retry.body), digest, 'retry: the body hashes to the digest');
  t.equal(up.blobGets(digest), 2, 'the retry started a fresh download');
  await assertCacheClean(t, m);
  t.same(await storedBlobs(m.root), [digest], 'the retry stored the blob');
});

t.test('truncated body with a correct Content-Length: the client transfer is cut and nothing is stored', async (t) => {
  const { up, m, blobUrl } = await setup(t);
  const { bytes, digest } = blob(t, up, 4 * MiB, 2);
  up.setBlobFault(digest, { kind: 'truncate', afterBytes: 3 * MiB, times: 1 });
  const first = await pull(blobUrl(digest));
  t.ok(first.status === 200 || first.status >= 500, `status ${first.status}`);
  if (first.status === 200) {
    t.equal(first.body, undefined, 'the body never completes');
    t.ok(first.received < bytes.length, `received ${first.received} < ${bytes.length} bytes`);
  }
  t.same(await storedBlobs(m.root), [], 'nothing stored');
  await assertCacheClean(t, m);
  const retry = await pull(blobUrl(digest));
  t.equal(retry.body && sha256(retry.body), digest, 'a retry gets the right bytes');
});

t.test('wrong digest: the client never receives the last byte, nothing is stored', async (t) => {
  const { up, m, blobUrl } = await setup(t);
  const { bytes, digest } = blob(t, up, 4 * MiB, 3);
  up.setBlobFault(digest, { kind: 'wrong-digest' });
  const first = await pull(blobUrl(digest));
  t.ok(first.status === 200 || first.status >= 500, `status ${first.status}`);
  t.equal(first.body, undefined, 'the body never completes');
  t.ok(first.received < bytes.length, `received ${first.received} < ${bytes.length} bytes: the final chunk was held back`);
  t.same(await storedBlobs(m.root), [], 'nothing stored');
  await assertCacheClean(t, m);
  // The fault persists: a second request fails the same way rather than serving a poisoned cache entry.
  const second = await pull(blobUrl(digest));
  t.equal(second.body, undefined, 'a second request fails too');
  t.same(await storedBlobs(m.root), [], 'still nothing stored');
});

t.test('wrong manifest bytes for a digest: 502 with an OCI body, nothing stored', async (t) => {
  const { up, m, manifestUrl } = await setup(t);
  const img = up.addImage('x/app', { tag: 'v1' });
  up.setManifestFault('x/app', img.digest, { kind: 'wrong-digest' });
  const res = await pull(manifestUrl('x/app', img.digest), { accept: OCI_ACCEPT });
  t.equal(res.status, 502);
  t.equal(ociCode(res), 'UPSTREAM_ERROR');
  t.same(await listFiles(join(m.root, 'manifests')), [], 'no manifest stored');
  await assertCacheClean(t, m);
});

t.test('429 with Retry-After on a blob: the client sees 429 and the Retry-After, nothing is cached', async (t) => {
  const { up, m, blobUrl } = await setup(t);
  const { digest } = blob(t, up, 64 * 1024, 4);
  up.setBlobFault(digest, { kind: 'status', status: 429, headers: { 'Retry-After': '7' } });
  const res = await pull(blobUrl(digest));
  t.equal(res.status, 429);
  t.equal(res.headers.get('retry-after'), '7', "the upstream's Retry-After is passed on");
  t.equal(ociCode(res), 'TOOMANYREQUESTS');
  t.same(await storedBlobs(m.root), [], 'nothing stored');
  await assertCacheClean(t, m);
});

t.test('429 with Retry-After on a manifest: the client sees 429 and the Retry-After, nothing is cached', async (t) => {
  const { up, m, manifestUrl } = await setup(t);
  up.addImage('x/app', { tag: 'v1' });
  up.setManifestFault('x/app', 'v1', { kind: 'status', status: 429, headers: { 'Retry-After': '12' } });
  const res = await pull(manifestUrl('x/app', 'v1'), { accept: OCI_ACCEPT });
  t.equal(res.status, 429);
  t.equal(res.headers.get('retry-after'), '12');
  t.equal(ociCode(res), 'TOOMANYREQUESTS');
  t.same(await listFiles(join(m.root, 'manifests')), [], 'no manifest stored');
  t.same(await listFiles(join(m.root, 'repositories')), [], 'no tag stored');
  await assertCacheClean(t, m);
});

t.test('503 from upstream: the client sees 503 with an OCI body, nothing is cached', async (t) => {
  const { up, m, blobUrl, manifestUrl } = await setup(t);
  const { digest } = blob(t, up, 64 * 1024, 5);
  up.addImage('x/app', { tag: 'v1' });
  up.setGlobalFault({ kind: 'status', status: 503 });
  const b = await pull(blobUrl(digest));
  t.equal(b.status, 503, 'blob: 503');
  t.equal(ociCode(b), 'UPSTREAM_UNAVAILABLE');
  t.ok(b.headers.get('retry-after'), 'blob: a Retry-After is sent');
  const mf = await pull(manifestUrl('x/app', 'v1'), { accept: OCI_ACCEPT });
  t.equal(mf.status, 503, 'manifest: 503');
  t.equal(ociCode(mf), 'UPSTREAM_UNAVAILABLE');
  t.same(await storedBlobs(m.root), [], 'nothing stored');
  t.same(await listFiles(join(m.root, 'manifests')), []);
  await assertCacheClean(t, m);
});

t.test('upstream stalls before its headers (60 s) with readTimeoutMs 1000: a quick 504 with an OCI body', async (t) => {
  const { up, m, blobUrl, manifestUrl } = await setup(t, { readTimeoutMs: 1000 });
  const { digest } = blob(t, up, 64 * 1024, 6);
  up.addImage('x/app', { tag: 'v1' });
  up.setGlobalFault({ kind: 'stall', ms: 60_000 });
  const b = await pull(blobUrl(digest), {}, 20_000);
  t.equal(b.status, 504, 'blob: 504');
  t.equal(ociCode(b), 'UPSTREAM_TIMEOUT');
  t.ok(b.ms < 10_000, `blob: answered in ${Math.round(b.ms)} ms, far below the 60 s stall`);
  const mf = await pull(manifestUrl('x/app', 'v1'), { accept: OCI_ACCEPT }, 20_000);
  t.equal(mf.status, 504, 'manifest: 504');
  t.equal(ociCode(mf), 'UPSTREAM_TIMEOUT');
  t.ok(mf.ms < 10_000, `manifest: answered in ${Math.round(mf.ms)} ms`);
  up.setGlobalFault(undefined);
  t.same(await storedBlobs(m.root), [], 'nothing stored');
  await assertCacheClean(t, m);
});

t.test('upstream stalls mid-body (60 s) with readTimeoutMs 1000: the client transfer is cut quickly, nothing is stored', async (t) => {
  const { up, m, blobUrl } = await setup(t, { readTimeoutMs: 1000 });
  const { bytes, digest } = blob(t, up, 4 * MiB, 7);
  up.setBlobFault(digest, { kind: 'stall', afterBytes: MiB, ms: 60_000, times: 1 });
  const first = await pull(blobUrl(digest), {}, 20_000);
  t.ok(first.ms < 10_000, `settled in ${Math.round(first.ms)} ms, far below the 60 s stall`);
  t.ok(first.status === 200 || first.status === 504, `status ${first.status}`);
  if (first.status === 200) {
    t.equal(first.body, undefined, 'the body never completes');
    t.ok(first.received < bytes.length, `received ${first.received} < ${bytes.length}`);
  }
  t.same(await storedBlobs(m.root), [], 'nothing stored');
  await assertCacheClean(t, m);
  const retry = await pull(blobUrl(digest));
  t.equal(retry.body && sha256(retry.body), digest, 'a retry gets the right bytes');
});

t.test('manifest body stalls (60 s) with readTimeoutMs 1000: a quick 504, nothing stored', async (t) => {
  const { up, m, manifestUrl } = await setup(t, { readTimeoutMs: 1000 });
  up.addImage('x/app', { tag: 'v1' });
  up.setManifestFault('x/app', 'v1', { kind: 'stall', afterBytes: 10, ms: 60_000 });
  const res = await pull(manifestUrl('x/app', 'v1'), { accept: OCI_ACCEPT }, 20_000);
  t.equal(res.status, 504);
  t.equal(ociCode(res), 'UPSTREAM_TIMEOUT');
  t.ok(res.ms < 10_000, `answered in ${Math.round(res.ms)} ms`);
  t.same(await listFiles(join(m.root, 'manifests')), [], 'no manifest stored');
  await assertCacheClean(t, m);
});

t.test('truncated manifest body: 502/504 with an OCI body, nothing stored', async (t) => {
  const { up, m, manifestUrl } = await setup(t, { readTimeoutMs: 2000 });
  up.addImage('x/app', { tag: 'v1' });
  up.setManifestFault('x/app', 'v1', { kind: 'truncate', afterBytes: 20 });
  const res = await pull(manifestUrl('x/app', 'v1'), { accept: OCI_ACCEPT }, 20_000);
  t.ok(res.status >= 502 && res.status <= 504, `status ${res.status}`);
  t.ok(ociCode(res), `OCI body (${ociCode(res)})`);
  t.same(await listFiles(join(m.root, 'manifests')), [], 'no manifest stored');
  await assertCacheClean(t, m);
});

// The upstream's headers arrived (the fill started) but it fails before the first body byte: no byte has
// been sent to the client yet, so the client can still get a proper status and OCI body - a 5xx that says
// "upstream", never a 500 INTERNAL.
for (const [label, fault, overrides] of [
  ['body stalls past readTimeoutMs', { kind: 'stall', afterBytes: 0, ms: 60_000 }, { readTimeoutMs: 1000 }],
  ['connection reset', { kind: 'reset', afterBytes: 0 }, {}],
  ['connection closed (truncated to 0 bytes)', { kind: 'truncate', afterBytes: 0 }, {}],
] as const) {
  t.test(`upstream fails before the first body byte (${label}): a 502/503/504 with an OCI body, never a 500`, async (t) => {
    const { up, m, blobUrl } = await setup(t, overrides);
    const { digest } = blob(t, up, 4 * MiB, 8);
    up.setBlobFault(digest, { ...fault, times: 1 });
    const r = await pull(blobUrl(digest), {}, 20_000);
    t.ok(r.status >= 502 && r.status <= 504, `status ${r.status} (${r.body?.toString('utf8').slice(0, 200) ?? r.error})`);
    t.match(ociCode(r) ?? '', /^UPSTREAM_/, `OCI error body (${ociCode(r)})`);
    t.ok(r.ms < 10_000, `answered in ${Math.round(r.ms)} ms`);
    t.same(await storedBlobs(m.root), [], 'nothing stored');
    await assertCacheClean(t, m);
    const retry = await pull(blobUrl(digest));
    t.equal(retry.body && sha256(retry.body), digest, 'a retry gets the right bytes');
  });
}

t.test(
  'with no local disk to spool to, a blob streams uncached and an upstream reset mid-body cuts the client quickly (no hang)',
  async (t) => {
    const { up, m, blobUrl } = await setup(t);
    const { bytes, digest } = blob(t, up, 4 * MiB, 9);
    const ok = blob(t, up, 2 * MiB, 10);
    // Take away both places a fill writes to: the cache's tmp/ and the spool directory.
    await rm(join(m.root, 'tmp'), { recursive: true, force: true });
    await rm(join(m.root, '..', `${m.root.split('/').pop() ?? ''}-spool`), { recursive: true, force: true });

    const fine = await pull(blobUrl(ok.digest));
    t.equal(fine.status, 200, 'uncached streaming works');
    t.equal(fine.body && sha256(fine.body), ok.digest, 'and hashes');

    // Every GET of this blob is reset (the mirror may try more than once).
    up.setBlobFault(digest, { kind: 'reset', afterBytes: MiB });
    const cut = await pull(blobUrl(digest), {}, 8000);
    t.ok(cut.ms < 5000, `settled in ${Math.round(cut.ms)} ms`);
    t.notMatch(cut.error ?? '', /abort|timeout/i, `the client did not have to give up (${cut.error ?? 'no error'})`);
    t.comment(`status ${cut.status}, content-length ${cut.headers.get('content-length')}, received ${cut.received}, error ${cut.error}`);
    t.equal(cut.body, undefined, 'the body never completes');
    t.ok(cut.received < bytes.length, `received ${cut.received} < ${bytes.length}`);
  },
);
