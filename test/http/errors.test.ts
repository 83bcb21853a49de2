import t, { type Test } from 'tap';
import { errorBody, statusOf, toOciError } from '../../src/http/errors.js';
import { OciError, type OciErrorCode } from '../../src/oci/errors.js';
import { sha256 } from '../fixtures/content.js';
import { startFixtureUpstream, type FixtureUpstream } from '../fixtures/upstream.js';
import { startMirror, type StartMirrorOptions, type TestMirror, type TestUpstream } from '../helpers/mirror.js';

t.test('each OCI error code has the status of the distribution spec', async (t) => {
  const expected: Record<string, number> = {
    BLOB_UNKNOWN: 404,
    MANIFEST_UNKNOWN: 404,
    NAME_UNKNOWN: 404,
    NAME_INVALID: 400,
    TAG_INVALID: 400,
    DIGEST_INVALID: 400,
    MANIFEST_INVALID: 400,
    SIZE_INVALID: 400,
    PAGINATION_NUMBER_INVALID: 400,
    UNAUTHORIZED: 401,
    DENIED: 403,
    UNSUPPORTED: 405,
    RANGE_INVALID: 416,
    TOOMANYREQUESTS: 429,
    UPSTREAM_ERROR: 502,
    UPSTREAM_UNAVAILABLE: 503,
    UPSTREAM_TIMEOUT: 504,
    INTERNAL: 500,
    NOT_FOUND: 404,
  };
  for (const [code, status] of Object.entries(expected)) t.equal(statusOf(code as OciErrorCode), status, code);
});

t.test('the error body is {"errors":[{code,message,detail}]}', async (t) => {
  t.same(JSON.parse(errorBody(new OciError('BLOB_UNKNOWN', 'blob unknown', { detail: { digest: 'x' } }))), {
    errors: [{ code: 'BLOB_UNKNOWN', message: 'blob unknown', detail: { digest: 'x' } }],
  });
  t.same(JSON.parse(errorBody(new OciError('DENIED', 'no'))), { errors: [{ code: 'DENIED', message: 'no' }] });
});

t.test('an OciError passes through toOciError unchanged', async (t) => {
  const e = new OciError('NAME_UNKNOWN', 'x');
  t.equal(toOciError(e), e);
});

t.test('framework 404/405/4xx errors map to NOT_FOUND / UNSUPPORTED', async (t) => {
  t.equal(toOciError({ statusCode: 404 }).code, 'NOT_FOUND');
  t.equal(toOciError({ statusCode: 405 }).code, 'UNSUPPORTED');
  t.equal(toOciError({ statusCode: 415, code: 'FST_ERR_CTP_INVALID_MEDIA_TYPE' }).code, 'UNSUPPORTED');
});

t.test('anything else is INTERNAL with a generic message, never the original message or stack', async (t) => {
  const original = new Error('ENOENT: /var/lib/secret/path at Object.<anonymous> (/app/src/x.ts:1:1)');
  const e = toOciError(original);
  t.equal(e.code, 'INTERNAL');
  t.equal(e.message, 'internal error');
  t.notMatch(errorBody(e), 'secret');
  t.notMatch(errorBody(e), 'x.ts');
});

// ---- end to end: every error code and status through the mirror ----

const STACK = /\n\s+at |\.ts:\d+|\.js:\d+|node:internal|node_modules/;

async function setup(
  t: Test,
  upstream: Partial<TestUpstream> = {},
  options: Partial<StartMirrorOptions> = {},
): Promise<{ up: FixtureUpstream; mirror: TestMirror }> {
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  const mirror = await startMirror({
    upstreams: [{ namespace: 'fixture.test', host: up.host, ...upstream }],
    defaultNamespace: 'fixture.test',
    ...options,
  });
  t.teardown(() => mirror.close());
  return { up, mirror };
}

/** Asserts an OCI error response: status, JSON content type, {"errors":[{code,message}]}, no stack trace. */
async function expectError(
  t: Test,
  mirror: TestMirror,
  path: string,
  status: number,
  code: string | undefined,
  init: RequestInit = {},
): Promise<Response> {
  const res = await fetch(`${mirror.url}${path}`, init);
  const text = await res.text();
  t.equal(res.status, status, `${init.method ?? 'GET'} ${path} -> ${status}`);
  t.match(res.headers.get('content-type'), /^application\/json/, 'JSON content type');
  t.notMatch(text, STACK, 'no stack trace');
  if (init.method === 'HEAD') return res;
  let doc: { errors?: { code?: unknown; message?: unknown }[] } = {};
  try {
    doc = JSON.parse(text) as typeof doc;
  } catch {
    t.fail(`body is not JSON: ${text.slice(0, 200)}`);
  }
  t.ok(Array.isArray(doc.errors) && doc.errors.length > 0, 'errors[]');
  t.type(doc.errors?.[0]?.code, 'string');
  t.type(doc.errors?.[0]?.message, 'string');
  if (code !== undefined) t.equal(doc.errors?.[0]?.code, code);
  return res;
}

const MISSING = sha256('missing');

t.test('BLOB_UNKNOWN is 404', async (t) => {
  const { mirror } = await setup(t);
  await expectError(t, mirror, `/v2/org/app/blobs/${MISSING}`, 404, 'BLOB_UNKNOWN');
});

t.test('MANIFEST_UNKNOWN is 404', async (t) => {
  const { mirror } = await setup(t);
  await expectError(t, mirror, '/v2/org/app/manifests/missing', 404, 'MANIFEST_UNKNOWN');
  await expectError(t, mirror, `/v2/org/app/manifests/${MISSING}`, 404, 'MANIFEST_UNKNOWN');
});

t.test('NAME_UNKNOWN is 404 for an unlisted namespace', async (t) => {
  const { up, mirror } = await setup(t);
  await expectError(t, mirror, '/v2/org/app/manifests/v1?ns=unlisted.example', 404, 'NAME_UNKNOWN');
  await expectError(t, mirror, `/v2/unlisted.example/org/app/blobs/${MISSING}`, 404, 'NAME_UNKNOWN');
  t.equal(up.requests.length, 0);
});

t.test('NAME_INVALID is 400 for a blob request with an invalid name', async (t) => {
  const { up, mirror } = await setup(t);
  await expectError(t, mirror, `/v2/Org/App/blobs/${MISSING}`, 400, 'NAME_INVALID');
  await expectError(t, mirror, `/v2/org/-app/blobs/${MISSING}`, 400, 'NAME_INVALID');
  await expectError(t, mirror, `/v2/org%2Fapp/blobs/${MISSING}`, 400, 'NAME_INVALID');
  await expectError(t, mirror, `/v2/${'a'.repeat(256)}/blobs/${MISSING}`, 400, 'NAME_INVALID');
  t.equal(up.requests.length, 0);
});

t.test('a manifest request with an invalid name is 404 with an OCI body, as the conformance suite expects', async (t) => {
  const { mirror } = await setup(t);
  await expectError(t, mirror, '/v2/Org/App/manifests/latest', 404, undefined);
});

t.test('a manifest request with an invalid reference is 404 MANIFEST_UNKNOWN', async (t) => {
  const { mirror } = await setup(t);
  await expectError(t, mirror, '/v2/org/app/manifests/.INVALID_MANIFEST_NAME', 404, 'MANIFEST_UNKNOWN');
});

t.test('DIGEST_INVALID is 400 for a malformed blob digest', async (t) => {
  const { up, mirror } = await setup(t);
  for (const d of ['sha256:abc', `sha256:${'A'.repeat(64)}`, `md5:${'a'.repeat(32)}`, 'notadigest']) {
    await expectError(t, mirror, `/v2/org/app/blobs/${d}`, 400, 'DIGEST_INVALID');
  }
  t.equal(up.requests.length, 0);
});

t.test('DIGEST_INVALID is 400 for a malformed manifest digest', async (t) => {
  const { mirror } = await setup(t);
  await expectError(t, mirror, '/v2/org/app/manifests/sha256:totallywrong', 400, 'DIGEST_INVALID');
});

t.test('UNSUPPORTED is 405 for PUT, POST, PATCH and DELETE (a read-only mirror)', async (t) => {
  const { up, mirror } = await setup(t);
  await expectError(t, mirror, '/v2/org/app/manifests/v1', 405, 'UNSUPPORTED', {
    method: 'PUT',
    headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
    body: '{"schemaVersion":2}',
  });
  await expectError(t, mirror, '/v2/org/app/blobs/uploads/', 405, 'UNSUPPORTED', { method: 'POST' });
  await expectError(t, mirror, '/v2/org/app/blobs/uploads/abc', 405, 'UNSUPPORTED', {
    method: 'PATCH',
    headers: { 'content-type': 'application/octet-stream' },
    body: Buffer.from('chunk'),
  });
  await expectError(t, mirror, `/v2/org/app/blobs/${MISSING}`, 405, 'UNSUPPORTED', { method: 'DELETE' });
  await expectError(t, mirror, '/v2/org/app/manifests/v1', 405, 'UNSUPPORTED', { method: 'DELETE' });
  t.equal(up.requests.length, 0);
});

t.test('a 405 names the allowed methods in Allow', async (t) => {
  const { mirror } = await setup(t);
  const res = await fetch(`${mirror.url}/v2/org/app/manifests/v1`, { method: 'DELETE' });
  await res.arrayBuffer();
  t.equal(res.status, 405);
  t.equal(res.headers.get('allow'), 'GET, HEAD');
});

t.test('DENIED is 403 when the upstream refuses access', async (t) => {
  const { up, mirror } = await setup(t);
  up.setGlobalFault({ kind: 'status', status: 403 });
  await expectError(t, mirror, '/v2/org/app/manifests/v1', 403, 'DENIED');
});

t.test('DENIED is 403 for a private literal namespace without a config', async (t) => {
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  const mirror = await startMirror({});
  t.teardown(() => mirror.close());
  await expectError(t, mirror, `/v2/${up.host}/org/app/manifests/v1`, 403, 'DENIED');
});

t.test('TOOMANYREQUESTS is 429 with the upstream Retry-After when nothing is cached', async (t) => {
  const { up, mirror } = await setup(t);
  up.addImage('org/app', { tag: 'v1' });
  up.setGlobalFault({ kind: 'status', status: 429, headers: { 'Retry-After': '17' } });
  const res = await expectError(t, mirror, '/v2/org/app/manifests/v1', 429, 'TOOMANYREQUESTS');
  t.equal(res.headers.get('retry-after'), '17');
  const blob = await expectError(t, mirror, `/v2/org/app/blobs/${MISSING}`, 429, 'TOOMANYREQUESTS');
  t.equal(blob.headers.get('retry-after'), '17');
});

t.test('TOOMANYREQUESTS without an upstream Retry-After still carries a Retry-After', async (t) => {
  const { up, mirror } = await setup(t);
  up.setGlobalFault({ kind: 'status', status: 429 });
  const res = await expectError(t, mirror, '/v2/org/app/manifests/v1', 429, 'TOOMANYREQUESTS');
  t.match(res.headers.get('retry-after'), /^\d+$/);
});

t.test('an unreachable upstream with nothing cached is 503 with an OCI body', async (t) => {
  const { up, mirror } = await setup(t);
  await up.stop();
  await expectError(t, mirror, '/v2/org/app/manifests/v1', 503, undefined);
  await expectError(t, mirror, `/v2/org/app/blobs/${MISSING}`, 503, undefined);
  await expectError(t, mirror, `/v2/org/app/blobs/${MISSING}`, 503, undefined, { method: 'HEAD' });
  await expectError(t, mirror, '/v2/org/app/tags/list', 503, undefined);
});

t.test('an upstream 500 is 502 with an OCI body', async (t) => {
  const { up, mirror } = await setup(t);
  up.setGlobalFault({ kind: 'status', status: 500 });
  await expectError(t, mirror, '/v2/org/app/manifests/v1', 502, undefined);
  await expectError(t, mirror, `/v2/org/app/blobs/${MISSING}`, 502, undefined);
});

t.test('an upstream 503 is 503 with an OCI body', async (t) => {
  const { up, mirror } = await setup(t);
  up.setGlobalFault({ kind: 'status', status: 503 });
  await expectError(t, mirror, '/v2/org/app/manifests/v1', 503, undefined);
});

t.test('an upstream that stalls beyond read_timeout is 504 with an OCI body', async (t) => {
  const { up, mirror } = await setup(t, { readTimeoutMs: 500 });
  up.addImage('org/app', { tag: 'v1' });
  up.setGlobalFault({ kind: 'stall', ms: 4000 });
  const started = Date.now();
  await expectError(t, mirror, '/v2/org/app/manifests/v1', 504, undefined);
  t.ok(Date.now() - started < 3500, 'answered near the read timeout, not after the stall');
});

t.test('an unknown route is 404 with an OCI JSON body', async (t) => {
  const { mirror } = await setup(t);
  await expectError(t, mirror, '/nope', 404, undefined);
  await expectError(t, mirror, '/v2/org/app', 404, undefined);
  await expectError(t, mirror, '/v2/org/app/whatever/x', 404, undefined);
  await expectError(t, mirror, '/v1/search', 404, undefined);
});

t.test('HEAD errors carry the status and JSON content type without a body', async (t) => {
  const { mirror } = await setup(t);
  const res = await fetch(`${mirror.url}/v2/org/app/blobs/${MISSING}`, { method: 'HEAD' });
  t.equal(res.status, 404);
  t.match(res.headers.get('content-type'), /^application\/json/);
  t.equal((await res.arrayBuffer()).byteLength, 0);
});

t.test('no error body ever carries a stack trace or a file path', async (t) => {
  const { up, mirror } = await setup(t, { readTimeoutMs: 500 });
  const paths = [
    '/v2/org/app/manifests/v1',
    `/v2/org/app/blobs/${MISSING}`,
    '/v2/org/app/tags/list',
    `/v2/org/app/referrers/${MISSING}`,
    '/v2/org/app/blobs/sha256:%00',
    '/v2/..%2f..%2fetc/passwd/manifests/x',
    `/v2/${'x/'.repeat(300)}manifests/v1`,
  ];
  for (const fault of [undefined, 500, 'stop'] as const) {
    if (typeof fault === 'number') up.setGlobalFault({ kind: 'status', status: fault });
    if (fault === 'stop') await up.stop();
    for (const p of paths) {
      const res = await fetch(`${mirror.url}${p}`);
      const text = await res.text();
      t.notMatch(text, STACK, `${String(fault)} ${p.slice(0, 60)}`);
      if (res.status >= 400) t.match(res.headers.get('content-type'), /^application\/json/, `${res.status} ${p.slice(0, 60)}`);
    }
  }
});
