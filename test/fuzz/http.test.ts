/**
 * Hostile input over a real socket: generated raw request paths (dot segments, encoded dots, slashes and
 * NULs, absolute-form targets, very long names, unicode) sent to a running mirror. Never a 5xx, never a
 * hang, always an OCI JSON error body for a 4xx, and nothing written outside the cache root. Also: methods
 * the mirror does not serve get 405 UNSUPPORTED, an oversized header gets 431 and the server keeps serving.
 */
import fc from 'fast-check';
import { METHODS } from 'node:http';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import t, { type Test } from 'tap';
import { isValidNamespace } from '../../src/oci/namespace.js';
import { randomBytesSeeded } from '../fixtures/content.js';
import { startFixtureUpstream, type AddedImage, type FixtureUpstream } from '../fixtures/upstream.js';
import { startMirror, type TestMirror } from '../helpers/mirror.js';

const NS = 'fixture.test';
const TIMEOUT_MS = 10_000;
const SPEC_NAME_COMPONENT = /^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*$/;
const SPEC_TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;

interface RawReply {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  /** How the exchange ended: a complete response, the server closing without one, or our timeout. */
  end: 'response' | 'closed' | 'timeout';
  ms: number;
}

/** Sends raw bytes on a fresh connection and reads until the server closes it (Connection: close). */
function rawRequest(port: number, request: Buffer | string, timeoutMs = TIMEOUT_MS): Promise<RawReply> {
  return new Promise((resolve) => {
    const started = performance.now();
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (timedOut: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const all = Buffer.concat(chunks);
      const sep = all.indexOf('\r\n\r\n');
      const head = sep < 0 ? all.toString('latin1') : all.subarray(0, sep).toString('latin1');
      const lines = head.split('\r\n');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1] ?? 0);
      const headers: Record<string, string> = {};
      for (const line of lines.slice(1)) {
        const i = line.indexOf(':');
        if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      let body: Buffer = sep < 0 ? Buffer.alloc(0) : all.subarray(sep + 4);
      const te = headers['transfer-encoding'];
      if (te && /chunked/i.test(te)) body = dechunk(body);
      resolve({ status, headers, body, end: timedOut ? 'timeout' : status ? 'response' : 'closed', ms: performance.now() - started });
    };
    const timer = setTimeout(() => finish(true), timeoutMs);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('close', () => finish(false));
    socket.on('error', () => finish(false));
    socket.write(request);
  });
}

function dechunk(data: Buffer): Buffer {
  const out: Buffer[] = [];
  let pos = 0;
  for (;;) {
    const nl = data.indexOf('\r\n', pos);
    if (nl < 0) break;
    const size = parseInt(data.subarray(pos, nl).toString('latin1'), 16);
    if (!Number.isFinite(size) || size === 0) break;
    out.push(data.subarray(nl + 2, nl + 2 + size));
    pos = nl + 2 + size + 2;
  }
  return Buffer.concat(out);
}

function get(port: number, target: string, method = 'GET', extraHeaders = ''): Promise<RawReply> {
  return rawRequest(
    port,
    Buffer.concat([
      Buffer.from(`${method} `),
      Buffer.from(target, 'latin1'),
      Buffer.from(` HTTP/1.1\r\nHost: mirror.test\r\n${extraHeaders}Connection: close\r\n\r\n`),
    ]),
  );
}

/** The OCI error code of a reply body, or undefined when the body is not `{"errors":[{"code","message"}]}`. */
function ociCode(r: RawReply): string | undefined {
  try {
    const doc = JSON.parse(r.body.toString('utf8')) as { errors?: { code?: unknown; message?: unknown }[] };
    const e = Array.isArray(doc.errors) ? doc.errors[0] : undefined;
    return e && typeof e.code === 'string' && typeof e.message === 'string' ? e.code : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Makes a generated path a syntactically valid request-target: bytes HTTP does not allow there (controls,
 * space, DEL, non-ASCII) are percent-encoded, everything else (including `%2e%2e` or `..`) is sent verbatim.
 */
function requestTarget(path: string): string {
  let out = '';
  for (const byte of Buffer.from(path, 'utf8')) {
    out += byte <= 0x20 || byte >= 0x7f ? `%${byte.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(byte);
  }
  return out;
}

async function snapshot(dir: string, exclude: string[]): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = join(d, e.name);
      if (exclude.includes(p)) continue;
      const s = await stat(p).catch(() => undefined);
      out.push(`${relative(dir, p)}${e.isDirectory() ? '/' : ''} ${s && !e.isDirectory() ? s.size : ''}`);
      if (e.isDirectory()) await walk(p);
    }
  };
  await walk(dir);
  return out.sort();
}

interface Env {
  up: FixtureUpstream;
  m: TestMirror;
  port: number;
  img: AddedImage;
  parent: string;
}

/** A mirror whose cache root lies inside a sentinel directory; the fixture is the default namespace. */
async function setup(t: Test): Promise<Env> {
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  const img = up.addImage('library/app', { tag: 'latest', layers: [randomBytesSeeded(100_000, 5)] });
  up.addImage('x/y/z', { tag: 'v1' });
  const parent = await mkdtemp(join(tmpdir(), 'oci-fuzz-sentinel-'));
  t.teardown(() => rm(parent, { recursive: true, force: true }));
  await mkdir(join(parent, 'sentinel', 'etc'), { recursive: true });
  await writeFile(join(parent, 'sentinel', 'etc', 'passwd'), 'root:x:0:0\n');
  await writeFile(join(parent, 'outside.txt'), 'outside the cache root\n');
  const m = await startMirror({
    root: join(parent, 'cache'),
    defaultNamespace: NS,
    upstreams: [{ namespace: NS, host: up.host, readTimeoutMs: 3000 }],
  });
  t.teardown(() => m.close());
  return { up, m, port: Number(new URL(m.url).port), img, parent };
}

const segment = fc.oneof(
  { weight: 5, arbitrary: fc.constantFrom('library', 'app', 'x', 'y', 'z', 'library/app', 'x/y/z', NS) },
  {
    weight: 5,
    arbitrary: fc.constantFrom(
      '..',
      '.',
      '',
      '%2e%2e',
      '%2E%2E',
      '.%2e',
      '%2e',
      '%2F',
      '%2f',
      '..%2f..%2fsentinel',
      '%00',
      '%',
      '%zz',
      '%5C',
      '\\',
      '..\\..',
      '~',
      ';',
      ';x=1',
      '_tags',
      '_uploads',
      'UPPER',
      '-x',
      'x-',
      '__',
      'é',
      '日本',
      '\u202e',
      '\ud83d\ude00',
      '\0',
      '\t',
      ' ',
      '\r\n',
      'etc',
      'passwd',
      'sentinel',
      '..%252f',
      '%252e%252e',
      '127.0.0.1:1',
      'localhost',
      '[::1]',
      '169.254.169.254',
      'docker.io',
      'manifests',
      'blobs',
      'tags',
      'list',
      'referrers',
      'uploads',
    ),
  },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 10 }) },
  { weight: 1, arbitrary: fc.integer({ min: 100, max: 2500 }).map((n) => 'a'.repeat(n)) },
);
const reference = fc.oneof(
  fc.constantFrom(
    'latest',
    'v1',
    'sha256:' + 'a'.repeat(64),
    '..',
    '%2e%2e',
    'sha256:..',
    'sha256:%2e%2e',
    'sha512:' + 'f'.repeat(128),
    'Latest',
    '_',
    'a'.repeat(129),
    '',
  ),
  segment,
);
const endpoint = fc.oneof(
  reference.map((r) => `manifests/${r}`),
  reference.map((r) => `blobs/${r}`),
  fc.constant('tags/list'),
  reference.map((r) => `referrers/${r}`),
  segment,
);
const query = fc.constantFrom(
  '',
  '',
  '',
  '?ns=fixture.test',
  '?ns=127.0.0.1:1',
  '?ns=..%2f..',
  '?ns=%00',
  '?ns=',
  '?ns=a&ns=b',
  '?n=-1',
  '?n=99999999999999',
  '?n=abc',
  '?last=%00',
  '?last=..',
  '?artifactType=%2e%2e',
  '?%',
  '?ns=LOCALHOST',
  '?ns=[::1]:80',
);
const prefix = fc.constantFrom(
  '/v2/',
  '/v2/',
  '/v2/',
  '/v2//',
  '/v2/./',
  '/v2/../',
  '//v2/',
  '/V2/',
  '/',
  'http://mirror.test/v2/',
  'http://127.0.0.1:1/v2/',
  '/v2/%2e%2e/',
);
const hostilePath = fc
  .tuple(prefix, fc.array(segment, { maxLength: 5 }), endpoint, query)
  .map(([p, segs, e, q]) => `${p}${[...segs, e].join('/')}${q}`)
  .filter((p) => Buffer.byteLength(p) < 12_000);

t.test(
  'a few hundred generated hostile paths: never a 5xx, never a hang, OCI error bodies, nothing written outside the cache root',
  async (t) => {
    const env = await setup(t);
    // Warm the cache a little so that some paths hit stored content.
    const warm = await get(env.port, `/v2/library/app/manifests/latest`, 'GET', 'Accept: application/vnd.oci.image.manifest.v1+json\r\n');
    t.equal(warm.status, 200, 'a legitimate pull works');
    const root = join(env.parent, 'cache');
    const spool = join(env.parent, 'cache-spool');
    const outsideBefore = await snapshot(env.parent, [root, spool]);
    const rootTopBefore = (await readdir(root)).sort();

    const paths = fc.sample(hostilePath, { numRuns: 400, seed: 42 });
    const problems: string[] = [];
    const statuses = new Map<number, number>();
    let next = 0;
    const worker = async () => {
      while (next < paths.length) {
        const path = paths[next++] as string;
        const method = next % 5 === 0 ? 'HEAD' : 'GET';
        const target = requestTarget(path);
        const r = await get(env.port, target, method);
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        const what = `${method} ${JSON.stringify(target.slice(0, 160))}`;
        if (r.end === 'timeout') problems.push(`${what}: no response within ${TIMEOUT_MS} ms`);
        else if (r.end === 'closed') problems.push(`${what}: connection closed without a response`);
        else if (r.status >= 500) problems.push(`${what}: ${r.status} ${r.body.toString('utf8').slice(0, 200)}`);
        else if (r.status >= 400) {
          if (!/^application\/json/.test(r.headers['content-type'] ?? ''))
            problems.push(`${what}: ${r.status} with content-type ${r.headers['content-type']}`);
          if (method === 'GET' && ociCode(r) === undefined)
            problems.push(`${what}: ${r.status} without an OCI error body: ${r.body.toString('utf8').slice(0, 200)}`);
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    t.comment(`statuses: ${JSON.stringify(Object.fromEntries([...statuses].sort((a, b) => a[0] - b[0])))}`);
    t.same(
      problems.slice(0, 25),
      [],
      `all ${paths.length} hostile requests answered properly (${problems.length} problems, first 25 shown)`,
    );

    const still = await get(env.port, '/v2/');
    t.equal(still.status, 200, 'the server still serves /v2/');
    t.same(await snapshot(env.parent, [root, spool]), outsideBefore, 'nothing was created or changed outside the cache root');
    t.same((await readdir(root)).sort(), rootTopBefore, 'no new top-level entry in the cache root');
    // Every tag record lies under repositories/<valid namespace>/<valid components>/_tags/<valid tag>, every
    // access link under repositories/<valid namespace>/<valid components>/_links/<blobs|manifests>/sha256/<hex>.
    const bad: string[] = [];
    const walk = async (dir: string, parts: string[]): Promise<void> => {
      for (const e of await readdir(dir, { withFileTypes: true })) {
        const p = join(dir, e.name);
        if (e.isDirectory()) await walk(p, [...parts, e.name]);
        else {
          const [ns, ...rest] = parts;
          const tagsAt = rest.indexOf('_tags');
          const linksAt = rest.indexOf('_links');
          const repo = rest.slice(0, tagsAt >= 0 ? tagsAt : linksAt);
          const recordOk =
            tagsAt >= 0
              ? tagsAt === rest.length - 1 && SPEC_TAG.test(e.name)
              : linksAt >= 0 &&
                linksAt === rest.length - 3 &&
                ['blobs', 'manifests'].includes(rest[linksAt + 1] ?? '') &&
                rest[linksAt + 2] === 'sha256' &&
                /^[a-f0-9]{64}$/.test(e.name);
          if (!ns || !isValidNamespace(ns) || !recordOk || repo.length === 0 || !repo.every((c) => SPEC_NAME_COMPONENT.test(c))) {
            bad.push(relative(root, p));
          }
        }
      }
    };
    await walk(join(root, 'repositories'), []);
    t.same(bad, [], 'every stored tag record and access link has a valid namespace, repository and name');
  },
);

t.test('methods other than GET and HEAD get 405 UNSUPPORTED with an OCI body', async (t) => {
  const env = await setup(t);
  const targets = [
    '/v2/',
    `/v2/library/app/manifests/latest`,
    `/v2/library/app/blobs/${env.img.layerDigests[0]}`,
    '/v2/library/app/tags/list',
  ];
  // CONNECT is not a request for a resource (Node hands it to a 'connect' listener); every other method
  // Node's HTTP parser knows reaches the application.
  const methods = METHODS.filter((m) => m !== 'GET' && m !== 'HEAD' && m !== 'CONNECT');
  const wrong: string[] = [];
  for (const target of targets) {
    for (const method of methods) {
      const r = await get(
        env.port,
        target,
        method,
        method === 'POST' || method === 'PUT' || method === 'PATCH' || method === 'QUERY' ? 'Content-Length: 0\r\n' : '',
      );
      if (r.status !== 405 || (method !== 'OPTIONS' && ociCode(r) !== 'UNSUPPORTED'))
        wrong.push(`${method} ${target}: ${r.status} ${ociCode(r) ?? r.body.toString('utf8').slice(0, 80)}`);
    }
  }
  t.same(wrong, [], `${methods.length} methods x ${targets.length} paths: 405 UNSUPPORTED`);
  t.equal(env.up.requests.length, 0, 'nothing reached the upstream');
});

t.test('CONNECT and method tokens unknown to HTTP are refused without a hang and the server keeps serving', async (t) => {
  const env = await setup(t);
  for (const method of ['CONNECT', 'FOO', 'GET\0', 'G ET']) {
    const r = await get(env.port, '/v2/library/app/manifests/latest', method);
    t.not(r.end, 'timeout', `${JSON.stringify(method)}: answered or closed (${r.status || r.end})`);
    t.ok(r.status === 0 || (r.status >= 400 && r.status < 500), `${JSON.stringify(method)}: no success, no 5xx (${r.status})`);
  }
  t.equal((await get(env.port, '/v2/')).status, 200, 'still serving');
});

t.test('an oversized header (> 16 KiB) gets 431 and the server keeps serving', async (t) => {
  const env = await setup(t);
  const big = await get(env.port, '/v2/', 'GET', `X-Big: ${'a'.repeat(20 * 1024)}\r\n`);
  t.equal(big.status, 431, 'one huge header: 431');
  const many = await get(env.port, '/v2/', 'GET', Array.from({ length: 400 }, (_, i) => `X-H${i}: ${'b'.repeat(60)}\r\n`).join(''));
  t.equal(many.status, 431, 'many headers adding up to > 16 KiB: 431');
  const longUrl = await get(env.port, `/v2/library/${'a'.repeat(20 * 1024)}/manifests/latest`);
  t.ok(longUrl.status === 431 || longUrl.status === 414, `a 20 KiB request target: 431/414 (${longUrl.status})`);
  const ok = await get(env.port, '/v2/library/app/manifests/latest', 'GET', 'Accept: application/vnd.oci.image.manifest.v1+json\r\n');
  t.equal(ok.status, 200, 'the next request is served');
  t.equal(ok.body.toString('utf8'), env.img.bytes.toString('utf8'));
});

t.test(
  'requests rejected by the HTTP parser (bad request line, raw NUL or non-ASCII, oversized header) get an OCI error body',
  async (t) => {
    const env = await setup(t);
    const cases: [string, Buffer][] = [
      ['raw NUL in the path', Buffer.from('GET /v2/x\0/manifests/y HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n', 'latin1')],
      ['raw UTF-8 in the path', Buffer.from('GET /v2/é/manifests/y HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n', 'utf8')],
      ['unknown method token', Buffer.from('FOO /v2/ HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n')],
      ['oversized header', Buffer.from(`GET /v2/ HTTP/1.1\r\nHost: a\r\nX-Big: ${'a'.repeat(20 * 1024)}\r\nConnection: close\r\n\r\n`)],
    ];
    for (const [what, req] of cases) {
      const r = await rawRequest(env.port, req);
      t.ok(r.status >= 400 && r.status < 500, `${what}: ${r.status}`);
      t.ok(ociCode(r), `${what}: OCI error body (got ${r.body.toString('utf8').slice(0, 120)})`);
    }
    t.equal((await get(env.port, '/v2/')).status, 200, 'still serving');
  },
);
