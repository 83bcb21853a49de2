import t, { type Test } from 'tap';
import { request as httpRequest } from 'node:http';
import { randomBytesSeeded, sha256 } from '../fixtures/content.js';
import { startFixtureUpstream, type FixtureOptions, type FixtureUpstream } from '../fixtures/upstream.js';
import { startMirror, type TestMirror } from '../helpers/mirror.js';

const SIZE = 300_000;

async function setup(
  t: Test,
  options?: FixtureOptions,
): Promise<{ up: FixtureUpstream; mirror: TestMirror; bytes: Buffer; digest: string }> {
  const up = await startFixtureUpstream(options);
  t.teardown(() => up.close());
  const mirror = await startMirror({ upstreams: [{ namespace: 'fixture.test', host: up.host }], defaultNamespace: 'fixture.test' });
  t.teardown(() => mirror.close());
  const bytes = randomBytesSeeded(SIZE, 11);
  const digest = up.addBlob(bytes);
  return { up, mirror, bytes, digest };
}

async function get(mirror: TestMirror, path: string, init: RequestInit = {}): Promise<{ res: Response; body: Buffer }> {
  const res = await fetch(`${mirror.url}${path}`, init);
  return { res, body: Buffer.from(await res.arrayBuffer()) };
}

/** A GET with exactly these headers over a fresh connection (fetch adds its own Accept-Encoding and decodes). */
function rawGet(
  url: string,
  headers: Record<string, string>,
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: 'GET', headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

async function warm(t: Test, mirror: TestMirror, digest: string): Promise<void> {
  const { res } = await get(mirror, `/v2/org/app/blobs/${digest}`);
  t.equal(res.status, 200, 'warmed');
  await mirror.settled();
  t.ok(await mirror.storage.statBlob(digest), 'the blob is in the cache');
}

for (const cache of ['cold', 'warm'] as const) {
  t.test(`${cache} cache: a blob GET returns the exact bytes with Content-Length, Docker-Content-Digest and Accept-Ranges`, async (t) => {
    const { mirror, bytes, digest } = await setup(t);
    if (cache === 'warm') await warm(t, mirror, digest);
    const { res, body } = await get(mirror, `/v2/org/app/blobs/${digest}`);
    t.equal(res.status, 200);
    t.equal(res.headers.get('content-length'), String(SIZE));
    t.equal(res.headers.get('docker-content-digest'), digest);
    t.equal(res.headers.get('accept-ranges'), 'bytes');
    t.equal(body.length, SIZE);
    t.equal(sha256(body), digest);
    t.same(body, bytes);
  });

  t.test(`${cache} cache: a blob HEAD answers 200 with Content-Length, Docker-Content-Digest, Accept-Ranges and no body`, async (t) => {
    const { mirror, digest } = await setup(t);
    if (cache === 'warm') await warm(t, mirror, digest);
    const { res, body } = await get(mirror, `/v2/org/app/blobs/${digest}`, { method: 'HEAD' });
    t.equal(res.status, 200);
    t.equal(res.headers.get('content-length'), String(SIZE));
    t.equal(res.headers.get('docker-content-digest'), digest);
    t.equal(res.headers.get('accept-ranges'), 'bytes');
    t.equal(body.length, 0);
  });

  t.test(`${cache} cache: Range bytes=a-b is 206 with Content-Range and exactly those bytes`, async (t) => {
    const { mirror, bytes, digest } = await setup(t);
    if (cache === 'warm') await warm(t, mirror, digest);
    const { res, body } = await get(mirror, `/v2/org/app/blobs/${digest}`, { headers: { range: 'bytes=1000-1999' } });
    t.equal(res.status, 206);
    t.equal(res.headers.get('content-range'), `bytes 1000-1999/${SIZE}`);
    t.equal(res.headers.get('content-length'), '1000');
    t.same(body, bytes.subarray(1000, 2000));
  });

  t.test(`${cache} cache: Range bytes=N- is 206 from N to the end`, async (t) => {
    const { mirror, bytes, digest } = await setup(t);
    if (cache === 'warm') await warm(t, mirror, digest);
    const { res, body } = await get(mirror, `/v2/org/app/blobs/${digest}`, { headers: { range: `bytes=${SIZE - 5000}-` } });
    t.equal(res.status, 206);
    t.equal(res.headers.get('content-range'), `bytes ${SIZE - 5000}-${SIZE - 1}/${SIZE}`);
    t.same(body, bytes.subarray(SIZE - 5000));
  });

  t.test(`${cache} cache: a suffix Range bytes=-N is 206 with the last N bytes`, async (t) => {
    const { mirror, bytes, digest } = await setup(t);
    if (cache === 'warm') await warm(t, mirror, digest);
    const { res, body } = await get(mirror, `/v2/org/app/blobs/${digest}`, { headers: { range: 'bytes=-100' } });
    t.equal(res.status, 206);
    t.equal(res.headers.get('content-range'), `bytes ${SIZE - 100}-${SIZE - 1}/${SIZE}`);
    t.same(body, bytes.subarray(SIZE - 100));
  });

  t.test(`${cache} cache: an unsatisfiable Range is 416 with Content-Range: bytes */total`, async (t) => {
    const { mirror, digest } = await setup(t);
    if (cache === 'warm') await warm(t, mirror, digest);
    const { res, body } = await get(mirror, `/v2/org/app/blobs/${digest}`, { headers: { range: `bytes=${SIZE}-` } });
    t.equal(res.status, 416);
    t.equal(res.headers.get('content-range'), `bytes */${SIZE}`);
    t.match(res.headers.get('content-type'), /^application\/json/);
    t.ok(Array.isArray((JSON.parse(body.toString()) as { errors: unknown[] }).errors));
  });
}

t.test('a cold ranged GET still caches the whole blob', async (t) => {
  const { up, mirror, digest } = await setup(t);
  const { res } = await get(mirror, `/v2/org/app/blobs/${digest}`, { headers: { range: 'bytes=0-9' } });
  t.equal(res.status, 206);
  for (let i = 0; i < 50 && !(await mirror.storage.statBlob(digest)); i++) await new Promise((r) => setTimeout(r, 20));
  t.equal((await mirror.storage.statBlob(digest))?.size, SIZE);
  t.equal(up.blobGets(digest), 1);
});

t.test('a second GET of a cached blob does not contact the upstream', async (t) => {
  const { up, mirror, digest } = await setup(t);
  await warm(t, mirror, digest);
  up.clearRequests();
  const { res } = await get(mirror, `/v2/org/app/blobs/${digest}`);
  t.equal(res.status, 200);
  t.equal(up.requests.length, 0);
});

t.test('a blob is never content-encoded, whatever Accept-Encoding the client sends', async (t) => {
  const { mirror, digest } = await setup(t);
  for (let i = 0; i < 2; i++) {
    const res = await rawGet(`${mirror.url}/v2/org/app/blobs/${digest}`, { 'accept-encoding': 'zstd, gzip' });
    const body = res.body;
    t.equal(res.status, 200);
    t.equal(res.headers['content-encoding'], undefined);
    t.equal(sha256(body), digest, i === 0 ? 'cold' : 'warm');
  }
});

t.test('an unknown blob is 404 BLOB_UNKNOWN for GET and HEAD', async (t) => {
  const { mirror } = await setup(t);
  const missing = sha256('not there');
  const { res, body } = await get(mirror, `/v2/org/app/blobs/${missing}`);
  t.equal(res.status, 404);
  t.match(res.headers.get('content-type'), /^application\/json/);
  t.equal((JSON.parse(body.toString()) as { errors: { code: string }[] }).errors[0]?.code, 'BLOB_UNKNOWN');
  const head = await get(mirror, `/v2/org/app/blobs/${missing}`, { method: 'HEAD' });
  t.equal(head.res.status, 404);
  t.equal(head.body.length, 0);
});

t.test('an empty blob is served with Content-Length 0', async (t) => {
  const { up, mirror } = await setup(t);
  const digest = up.addBlob(Buffer.alloc(0));
  for (let i = 0; i < 2; i++) {
    const { res, body } = await get(mirror, `/v2/org/app/blobs/${digest}`);
    t.equal(res.status, 200);
    t.equal(res.headers.get('content-length'), '0');
    t.equal(body.length, 0);
  }
});

t.test('a blob from an upstream that redirects to another host is served and cached', async (t) => {
  const { up, mirror, bytes, digest } = await setup(t, { redirectBlobs: true });
  const { res, body } = await get(mirror, `/v2/org/app/blobs/${digest}`);
  t.equal(res.status, 200);
  t.same(body, bytes);
  t.equal(up.redirectBlobGets(digest), 1);
  await mirror.settled();
  t.ok(await mirror.storage.statBlob(digest));
});

t.test('a blob of several MiB streams intact', async (t) => {
  const { up, mirror } = await setup(t);
  const big = randomBytesSeeded(5 * 1024 * 1024 + 17, 99);
  const digest = up.addBlob(big);
  const { res, body } = await get(mirror, `/v2/org/app/blobs/${digest}`);
  t.equal(res.status, 200);
  t.equal(body.length, big.length);
  t.equal(sha256(body), digest);
});
