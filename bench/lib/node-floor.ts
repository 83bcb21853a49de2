/**
 * The floor of a pull-through cache on Node, as a bench peer (`node-floor`): what the platform alone
 * costs for the same work, with none of the mirror's policy. Plain node:http, one undici Pool to the
 * upstream, and nothing else:
 *
 * - a blob it has is streamed from its file; one it has not is fetched, hashed, written to a temp file
 *   and sent to the client chunk by chunk (waiting for the socket), then checked, synced and renamed
 *   into place (the last byte is not held back for the verdict, as the mirror's is);
 * - a manifest, by tag or digest, is fetched once and then answered from memory, GET and HEAD;
 * - no coalescing, no freshness, no links, no logging, no metrics, no error format, no limits.
 *
 * It answers the bench's requests only; it is no registry. Run by peers.ts as
 * `node node-floor.js <port> <upstream url> <root dir>`.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { once } from 'node:events';
import { join } from 'node:path';
import { Pool } from 'undici';

const [portArg, upstreamUrl, root] = process.argv.slice(2);
if (!portArg || !upstreamUrl || !root) throw new Error('usage: node-floor.js <port> <upstream url> <root dir>');
const pool = new Pool(upstreamUrl, { connections: 64, pipelining: 1 });
const manifests = new Map<string, { body: Buffer; headers: Record<string, string> }>();
let tempCounter = 0;

const BLOB = /^\/v2\/(.+)\/blobs\/(sha256:[0-9a-f]{64})$/;
const MANIFEST = /^\/v2\/(.+)\/manifests\/([^/]+)$/;

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = req.url ?? '/';
  if (path === '/v2/' || path === '/v2') {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': 2 }).end('{}');
    return;
  }
  const blob = BLOB.exec(path);
  if (blob) return serveBlob(req, res, path, blob[2]!);
  if (MANIFEST.test(path)) return serveManifest(req, res, path);
  res.writeHead(404).end();
}

async function serveManifest(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
  const key = `${path}|${req.headers.accept ?? ''}`;
  let m = manifests.get(key);
  if (!m) {
    const up = await pool.request({ method: 'GET', path, headers: { accept: req.headers.accept ?? '*/*' } });
    const body = Buffer.from(await up.body.arrayBuffer());
    if (up.statusCode !== 200) {
      res.writeHead(up.statusCode).end(body);
      return;
    }
    const headers: Record<string, string> = { 'content-length': String(body.length) };
    for (const h of ['content-type', 'docker-content-digest']) {
      const v = up.headers[h];
      if (typeof v === 'string') headers[h] = v;
    }
    m = { body, headers };
    manifests.set(key, m);
  }
  res.writeHead(200, m.headers);
  res.end(req.method === 'HEAD' ? undefined : m.body);
}

async function serveBlob(req: IncomingMessage, res: ServerResponse, path: string, digest: string): Promise<void> {
  const file = join(root!, digest.slice(7));
  const cached = await stat(file).catch(() => undefined);
  if (cached) {
    res.writeHead(200, { 'content-length': cached.size, 'content-type': 'application/octet-stream', 'docker-content-digest': digest });
    if (req.method === 'HEAD') return void res.end();
    createReadStream(file).pipe(res);
    return;
  }
  const up = await pool.request({ method: req.method === 'HEAD' ? 'HEAD' : 'GET', path });
  if (up.statusCode !== 200) {
    await up.body.dump();
    res.writeHead(up.statusCode).end();
    return;
  }
  const length = up.headers['content-length'];
  res.writeHead(200, {
    'content-length': typeof length === 'string' ? length : undefined,
    'content-type': 'application/octet-stream',
    'docker-content-digest': digest,
  });
  if (req.method === 'HEAD') {
    await up.body.dump();
    return void res.end();
  }
  const temp = join(root!, `.tmp-${process.pid}-${tempCounter++}`);
  // flush: fsync before close, durable before it is published, as the mirror's commit is.
  const out = createWriteStream(temp, { flush: true });
  const hash = createHash('sha256');
  for await (const chunk of up.body) {
    const buf = chunk as Buffer;
    hash.update(buf);
    out.write(buf);
    if (!res.write(buf)) await once(res, 'drain');
  }
  out.end();
  await once(out, 'close');
  if (`sha256:${hash.digest('hex')}` === digest) await rename(temp, file);
  else await rm(temp, { force: true });
  res.end();
}

createServer((req, res) => {
  handle(req, res).catch(() => res.destroy());
}).listen(Number(portArg), '127.0.0.1');
