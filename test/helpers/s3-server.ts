import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, utimes } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A real S3-compatible server (s3rver 3) in a child process, for tests. stop() kills the process
 * (SIGKILL, like a crash or a network cut) and start() brings it back on the same port and data
 * directory, so tests can take "S3" away and back.
 *
 * s3rver 3 implements neither AbortMultipartUpload nor ListMultipartUploads. The child adds both
 * in front of s3rver's routes, over s3rver's own upload directory
 * (`<dir>/<bucket>/._S3rver_uploads/<uploadId>/{key,metadata,<part>...}`), so that aborting an
 * upload really removes it and the backend's stale-upload clean-up can be exercised. Those two
 * routes do not check signatures (a test server only). An upload's "Initiated" time is the mtime of
 * its `key` file (see ageUpload).
 */

export const S3RVER_ACCESS_KEY_ID = 'S3RVER';
export const S3RVER_SECRET_ACCESS_KEY = 'S3RVER';

export interface S3TestServer {
  /** `http://127.0.0.1:<port>` */
  readonly endpoint: string;
  readonly port: number;
  readonly bucket: string;
  /** s3rver's data directory. */
  readonly dir: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** Kills the server process (SIGKILL) and waits for it to exit. */
  stop(): Promise<void>;
  /** Starts it again on the same port and directory; resolves once it listens. */
  start(): Promise<void>;
  /** Stops it and removes its directory. */
  close(): Promise<void>;
  readonly running: boolean;
  /** Multipart uploads not completed nor aborted, read from s3rver's directory. */
  pendingUploads(keyPrefix?: string): Promise<Array<{ uploadId: string; key: string }>>;
  /** Every request the server received so far (method and URL, path style), oldest first. */
  requests(): Promise<Array<{ method: string; url: string }>>;
  /**
   * Uploads of the object `key` started so far: a CreateMultipartUpload (`POST key?uploads`) or a
   * single PutObject (a `PUT key` without `uploadId`).
   */
  uploadsOf(key: string): Promise<number>;
  /** Back-dates an upload's "Initiated" time. */
  ageUpload(uploadId: string, initiated: Date): Promise<void>;
}

/** The mirror's `s3` subcommand with its flags for this server; a `prefix` per test keeps their objects apart. */
export function s3CommandArgs(
  s3: Pick<S3TestServer, 'endpoint' | 'bucket' | 'accessKeyId' | 'secretAccessKey'>,
  prefix?: string,
): string[] {
  return [
    's3',
    '--bucket',
    s3.bucket,
    '--host',
    s3.endpoint,
    '--access-key',
    s3.accessKeyId,
    '--secret-key',
    s3.secretAccessKey,
    ...(prefix !== undefined ? ['--prefix', prefix] : []),
  ];
}

const UPLOADS_DIR = '._S3rver_uploads';

/** Runs inside the child: s3rver plus the two multipart routes it lacks. CommonJS, no TypeScript. */
const CHILD_SCRIPT = String.raw`
'use strict';
const fs = require('fs');
const path = require('path');
const S3rver = require(process.env.S3RVER_MODULE);
const [directory, portArg, bucket] = process.argv.slice(1);
const UPLOADS = ${JSON.stringify(UPLOADS_DIR)};
const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const xml = (ctx, status, body) => {
  ctx.status = status;
  ctx.type = 'application/xml';
  ctx.body = '<?xml version="1.0" encoding="UTF-8"?>\n' + body;
};
async function multipartShim(ctx, next) {
  // Path style: /<bucket>, /<bucket>/ or /<bucket>/<key>.
  const m = /^\/([^/]+)\/?(.*)$/.exec(ctx.path);
  if (!m) return next();
  const b = decodeURIComponent(m[1]);
  const key = m[2] === '' ? undefined : decodeURIComponent(m[2]);
  const uploadsDir = path.join(directory, path.basename(b), UPLOADS);
  if (ctx.method === 'DELETE' && key !== undefined && 'uploadId' in ctx.query) {
    const dir = path.join(uploadsDir, path.basename(String(ctx.query.uploadId)));
    let stored;
    try { stored = fs.readFileSync(path.join(dir, 'key'), 'utf8'); } catch { stored = undefined; }
    if (stored !== key) {
      return xml(ctx, 404, '<Error><Code>NoSuchUpload</Code><Message>The specified upload does not exist.</Message></Error>');
    }
    fs.rmSync(dir, { recursive: true, force: true });
    ctx.status = 204;
    return;
  }
  if (ctx.method === 'GET' && key === undefined && 'uploads' in ctx.query) {
    const prefix = String(ctx.query.prefix || '');
    let ids = [];
    try { ids = fs.readdirSync(uploadsDir); } catch { ids = []; }
    const uploads = [];
    for (const id of ids) {
      try {
        const keyFile = path.join(uploadsDir, id, 'key');
        const k = fs.readFileSync(keyFile, 'utf8');
        if (k.startsWith(prefix)) uploads.push({ id, key: k, initiated: fs.statSync(keyFile).mtime });
      } catch { /* completed meanwhile */ }
    }
    uploads.sort((a, c) => (a.key < c.key ? -1 : a.key > c.key ? 1 : a.id < c.id ? -1 : 1));
    return xml(ctx, 200,
      '<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' +
      '<Bucket>' + esc(b) + '</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>' +
      '<Prefix>' + esc(prefix) + '</Prefix><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>' +
      uploads.map((u) => '<Upload><Key>' + esc(u.key) + '</Key><UploadId>' + esc(u.id) + '</UploadId>' +
        '<Initiated>' + u.initiated.toISOString() + '</Initiated><StorageClass>STANDARD</StorageClass></Upload>').join('') +
      '</ListMultipartUploadsResult>');
  }
  return next();
}
const server = new S3rver({
  address: '127.0.0.1',
  port: Number(portArg),
  directory,
  silent: true,
  configureBuckets: [{ name: bucket, configs: [] }],
});
server.middleware.unshift(multipartShim);
// Every request, as it arrives, for tests that count calls (how many uploads a blob got).
const requestLog = process.env.S3RVER_REQUEST_LOG;
if (requestLog) server.middleware.unshift((ctx, next) => (fs.appendFileSync(requestLog, ctx.method + ' ' + ctx.url + '\n'), next()));
// The parent holds our stdin: when it goes away (even killed), so do we.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
server.run().then(
  (address) => process.stdout.write(JSON.stringify({ port: address.port }) + '\n'),
  (err) => { process.stderr.write(String(err && err.stack || err) + '\n'); process.exit(1); },
);
`;

const require = createRequire(import.meta.url);

export async function startS3Server(options: { bucket?: string } = {}): Promise<S3TestServer> {
  const bucket = options.bucket ?? 'cache-bucket';
  const dir = await mkdtemp(join(tmpdir(), 's3rver-'));
  // Beside the data directory, not in it: s3rver takes every entry there for a bucket.
  const requestLog = `${dir}.requests.log`;
  const s3rverModule = require.resolve('s3rver');
  let child: ChildProcess | undefined;
  let port = 0;

  const killOnExit = () => child?.kill('SIGKILL');
  process.once('exit', killOnExit);

  const spawnServer = async (): Promise<void> => {
    const env: NodeJS.ProcessEnv = { ...process.env, S3RVER_MODULE: s3rverModule, S3RVER_REQUEST_LOG: requestLog };
    delete env.NODE_OPTIONS; // no test-runner loaders in the server
    const proc = spawn(process.execPath, ['-e', CHILD_SCRIPT, dir, String(port), bucket], {
      env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    child = proc;
    let stderr = '';
    proc.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr = (stderr + d).slice(-4000);
    });
    await new Promise<void>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => fail(new Error('s3rver did not start within 15 s')), 15_000);
      const onData = (d: string) => {
        out += d;
        const nl = out.indexOf('\n');
        if (nl < 0) return;
        cleanup();
        try {
          port = (JSON.parse(out.slice(0, nl)) as { port: number }).port;
          resolve();
        } catch (e) {
          fail(e as Error);
        }
      };
      const onExit = (code: number | null) => fail(new Error(`s3rver exited with ${code} before listening: ${stderr}`));
      const cleanup = () => {
        clearTimeout(timer);
        proc.stdout!.off('data', onData);
        proc.off('exit', onExit);
      };
      const fail = (e: Error) => {
        cleanup();
        proc.kill('SIGKILL');
        reject(e);
      };
      proc.stdout!.setEncoding('utf8').on('data', onData);
      proc.once('exit', onExit);
    });
    // Keep draining output so the child never blocks on a full pipe.
    proc.stdout!.resume();
  };

  const stop = async (): Promise<void> => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      proc.once('exit', () => resolve());
      proc.kill('SIGKILL');
    });
  };

  await spawnServer();

  const uploadsDir = join(dir, bucket, UPLOADS_DIR);
  const requests = async (): Promise<Array<{ method: string; url: string }>> => {
    const text = await readFile(requestLog, 'utf8').catch(() => '');
    return text
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => {
        const space = l.indexOf(' ');
        return { method: l.slice(0, space), url: l.slice(space + 1) };
      });
  };
  return {
    get endpoint() {
      return `http://127.0.0.1:${port}`;
    },
    get port() {
      return port;
    },
    bucket,
    dir,
    accessKeyId: S3RVER_ACCESS_KEY_ID,
    secretAccessKey: S3RVER_SECRET_ACCESS_KEY,
    get running() {
      return child !== undefined;
    },
    stop,
    async start() {
      if (child) return;
      await spawnServer();
    },
    async close() {
      await stop();
      process.off('exit', killOnExit);
      await rm(dir, { recursive: true, force: true });
      await rm(requestLog, { force: true });
    },
    requests,
    async uploadsOf(key) {
      const path = `/${bucket}/${key}`;
      return (await requests()).filter((r) => {
        const [p, q = ''] = r.url.split('?');
        const query = new URLSearchParams(q);
        return (
          decodeURIComponent(p ?? '') === path &&
          ((r.method === 'POST' && query.has('uploads')) || (r.method === 'PUT' && !query.has('uploadId')))
        );
      }).length;
    },
    async pendingUploads(keyPrefix = '') {
      let ids: string[];
      try {
        ids = await readdir(uploadsDir);
      } catch {
        return [];
      }
      const result: Array<{ uploadId: string; key: string }> = [];
      for (const uploadId of ids) {
        const key = await readFile(join(uploadsDir, uploadId, 'key'), 'utf8').catch(() => undefined);
        if (key !== undefined && key.startsWith(keyPrefix)) result.push({ uploadId, key });
      }
      return result;
    },
    async ageUpload(uploadId, initiated) {
      const keyFile = join(uploadsDir, uploadId, 'key');
      await stat(keyFile);
      await utimes(keyFile, initiated, initiated);
    },
  };
}
