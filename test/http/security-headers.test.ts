/**
 * Every response carries `X-Content-Type-Options: nosniff` (a browser must never sniff a blob or a
 * manifest, bytes a client chose, into HTML or script): routes, errors, 404s, 405s, health, metrics, the
 * separate metrics listener and the raw answers to requests Node's parser rejects.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import t from 'tap';
import { createLogger } from '../../src/log.js';
import { buildMetricsApp } from '../../src/http/routes/metrics.js';
import { startFixtureUpstream } from '../fixtures/upstream.js';
import { startMirror } from '../helpers/mirror.js';

const NOSNIFF = 'nosniff';

/** Sends raw bytes and returns the raw response text (for requests fetch() cannot send). */
function rawExchange(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1', () => sock.write(bytes));
    let text = '';
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => (text += d));
    sock.on('end', () => resolve(text));
    sock.on('error', reject);
  });
}

t.test('every kind of response from the main listener says nosniff', async (t) => {
  const up = await startFixtureUpstream();
  const img = up.addImage('team/app', { tag: 'v1' });
  const layer = img.layerDigests[0] as string;
  const dir = await mkdtemp(join(tmpdir(), 'nosniff-'));
  const htpasswd = join(dir, 'htpasswd');
  await writeFile(htpasswd, `alice:${bcrypt.hashSync('pw', 4)}\n`);
  const m = await startMirror({
    upstreams: [
      { namespace: 'public.example', host: up.host },
      { namespace: 'private.example', host: up.host, clientAuthFile: htpasswd },
    ],
  });
  t.teardown(async () => {
    await m.close();
    await up.close();
    await rm(dir, { recursive: true, force: true });
  });
  const pub = (p: string) => `${m.url}/v2/team/app/${p}${p.includes('?') ? '&' : '?'}ns=public.example`;
  const cases: [string, string, RequestInit?][] = [
    ['base (401 challenge while a namespace is protected)', `${m.url}/v2/`],
    ['manifest 200', pub('manifests/v1')],
    ['manifest HEAD', pub('manifests/v1'), { method: 'HEAD' }],
    ['manifest unknown 404', pub('manifests/nope')],
    ['blob 200 (cold, then warm below)', pub(`blobs/${layer}`)],
    ['blob 200 warm', pub(`blobs/${layer}`)],
    ['blob 206', pub(`blobs/${layer}`), { headers: { range: 'bytes=0-3' } }],
    ['blob 416', pub(`blobs/${layer}`), { headers: { range: 'bytes=999999999-' } }],
    ['bad digest 400', pub('blobs/sha256:xyz')],
    ['tags list', pub('tags/list')],
    ['referrers', pub(`referrers/${img.digest}`)],
    ['catalog', `${m.url}/v2/_catalog`],
    ['protected namespace 401', `${m.url}/v2/team/app/manifests/v1?ns=private.example`],
    ['unknown /v2 endpoint 404', `${m.url}/v2/team/app/nothing/here`],
    ['path outside /v2 404', `${m.url}/index.html`],
    ['write method on /v2 405', pub('manifests/v1'), { method: 'PUT', body: 'x' }],
    ['unrouted method elsewhere 405', `${m.url}/elsewhere`, { method: 'DELETE' }],
    ['malformed percent-encoding', `${m.url}/v2/%E0%A4%A/manifests/v1`],
    ['healthz', `${m.url}/healthz`],
    ['readyz', `${m.url}/readyz`],
    ['metrics', `${m.url}/metrics`],
  ];
  for (const [name, url, init] of cases) {
    const r = await fetch(url, init);
    await r.arrayBuffer();
    t.equal(r.headers.get('x-content-type-options'), NOSNIFF, `${name} (${r.status})`);
  }
});

t.test('a request the HTTP parser rejects still gets nosniff', async (t) => {
  const m = await startMirror();
  t.teardown(() => m.close());
  const port = Number(new URL(m.url).port);
  const text = await rawExchange(port, 'GET /v2/ HTTP/1.1\r\nHost: x\r\nbad header line\r\n\r\n');
  t.match(text, /^HTTP\/1\.1 400/);
  t.match(text, /\r\nx-content-type-options: nosniff\r\n/i);
});

t.test('the separate metrics listener says nosniff on /metrics and on its 404s', async (t) => {
  const app = await buildMetricsApp({ contentType: 'text/plain', metrics: async () => 'x 1\n' }, createLogger('silent'));
  await app.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(() => app.close());
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  for (const path of ['/metrics', '/v2/']) {
    const r = await fetch(`http://127.0.0.1:${port}${path}`);
    await r.arrayBuffer();
    t.equal(r.headers.get('x-content-type-options'), NOSNIFF, `${path} (${r.status})`);
  }
});
