/**
 * The measurements. Byte-heavy clients are external C programs (curl, wrk, ab) so that the bench's own
 * Node process stays out of the way; the cold pulls use an undici client that checks every digest,
 * like a real puller does.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { MANIFEST_ACCEPT, type Blob, type Image } from './upstream.js';
import { memOf, processTree, run, sleep } from './util.js';

// ---------- cold pulls (undici, digest-verified) ----------

async function getVerified(agent: Agent, url: string, digest: string, headers: Record<string, string> = {}): Promise<Buffer | number> {
  const res = await request(url, { method: 'GET', dispatcher: agent, headers, headersTimeout: 300_000, bodyTimeout: 300_000 });
  if (res.statusCode !== 200) {
    const text = await res.body.text().catch(() => '');
    throw new Error(`GET ${url}: HTTP ${res.statusCode} ${text.slice(0, 200)}`);
  }
  const hash = createHash(digest.startsWith('sha512:') ? 'sha512' : 'sha256');
  const keep = headers['accept'] !== undefined;
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of res.body) {
    const b = chunk as Buffer;
    hash.update(b);
    bytes += b.length;
    if (keep) chunks.push(b);
  }
  const got = `${digest.split(':')[0]}:${hash.digest('hex')}`;
  if (got !== digest) throw new Error(`GET ${url}: body hashes to ${got}, expected ${digest} (${bytes} bytes)`);
  return keep ? Buffer.concat(chunks) : bytes;
}

async function pool<T>(items: T[], concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (next < items.length) {
      const item = items[next++]!;
      await fn(item);
    }
  });
  await Promise.all(workers);
}

/**
 * A pull the way containerd does it: HEAD the tag, GET the manifest by digest, then the config and
 * every layer (`concurrency` at a time), each body hashed and checked. Returns seconds.
 */
export async function coldPull(base: string, image: Image, concurrency: number): Promise<number> {
  const agent = new Agent({ connections: concurrency + 1, keepAliveTimeout: 10_000 });
  const started = performance.now();
  try {
    const head = await request(`${base}/v2/${image.name}/manifests/${image.tag}`, {
      method: 'HEAD',
      dispatcher: agent,
      headers: { accept: MANIFEST_ACCEPT },
    });
    await head.body.dump();
    const digest = head.headers['docker-content-digest'];
    if (head.statusCode !== 200 || digest !== image.manifestDigest) {
      throw new Error(
        `HEAD manifest ${image.name}:${image.tag}: HTTP ${head.statusCode}, Docker-Content-Digest ${String(digest)} (expected ${image.manifestDigest})`,
      );
    }
    const body = await getVerified(agent, `${base}/v2/${image.name}/manifests/${digest}`, digest, { accept: MANIFEST_ACCEPT });
    const manifest = JSON.parse((body as Buffer).toString('utf8')) as { config: Blob; layers: Blob[] };
    const blobs = [manifest.config, ...manifest.layers];
    await pool(blobs, concurrency, async (b) => {
      const n = await getVerified(agent, `${base}/v2/${image.name}/blobs/${b.digest}`, b.digest);
      if (n !== b.size) throw new Error(`blob ${b.digest}: ${String(n)} bytes, expected ${b.size}`);
    });
    return (performance.now() - started) / 1000;
  } finally {
    await agent.close();
  }
}

/** One blob, hashed and checked. Returns seconds. */
export async function coldBlob(base: string, name: string, blob: Blob): Promise<number> {
  const agent = new Agent({ connections: 1 });
  const started = performance.now();
  try {
    const n = await getVerified(agent, `${base}/v2/${name}/blobs/${blob.digest}`, blob.digest);
    if (n !== blob.size) throw new Error(`blob ${blob.digest}: ${String(n)} bytes, expected ${blob.size}`);
    return (performance.now() - started) / 1000;
  } finally {
    await agent.close();
  }
}

// ---------- curl fan-out (warm throughput, thundering herd) ----------

export interface CurlResult {
  wallSeconds: number;
  /** Bytes received by transfers that answered 200 with the full size. */
  goodBytes: number;
  transfers: number;
  failures: string[];
  /** user+system CPU seconds of all curl processes. */
  clientCpuSeconds: number;
}

function parseTimes(s: string): number {
  const m = /^(\d+)m([\d.]+)s$/.exec(s.trim());
  return m ? Number(m[1]) * 60 + Number(m[2]) : 0;
}

/**
 * `clients` curl processes at once, each fetching `url` `perClient` times on one connection into
 * /dev/null. Wall time and the children's CPU come from the bash that runs them (`times`).
 */
export async function curlFanOut(
  url: string,
  clients: number,
  perClient: number,
  expectedSize: number,
  timeoutMs = 600_000,
): Promise<CurlResult> {
  const transfer = Array.from({ length: perClient }, () => `-o /dev/null '${url}'`).join(' ');
  const script = [
    's=$(date +%s%N)',
    `for i in $(seq 1 ${clients}); do curl -s --max-time ${Math.ceil(timeoutMs / 1000)} -w 'R %{http_code} %{size_download}\\n' ${transfer} & done`,
    'wait',
    'e=$(date +%s%N)',
    'echo "WALL $((e-s))"',
    'times',
  ].join('\n');
  const r = await run('bash', ['-c', script], { timeoutMs: timeoutMs + 30_000 });
  const lines = r.stdout.split('\n');
  let wallNs = 0;
  let goodBytes = 0;
  let transfers = 0;
  const failures: string[] = [];
  const timesLines: string[] = [];
  for (const line of lines) {
    if (line.startsWith('R ')) {
      transfers++;
      const [, code, size] = line.split(' ');
      if (code === '200' && Number(size) === expectedSize) goodBytes += Number(size);
      else failures.push(`HTTP ${code} ${size} bytes`);
    } else if (line.startsWith('WALL ')) {
      wallNs = Number(line.slice(5));
    } else if (/^\d+m[\d.]+s \d+m[\d.]+s$/.test(line.trim())) {
      timesLines.push(line.trim());
    }
  }
  const missing = clients * perClient - transfers;
  if (missing > 0) failures.push(`${missing} transfers did not report (curl exit status / timeout)`);
  const children = timesLines[1]?.split(' ') ?? [];
  const clientCpuSeconds = parseTimes(children[0] ?? '') + parseTimes(children[1] ?? '');
  return { wallSeconds: wallNs / 1e9, goodBytes, transfers, failures, clientCpuSeconds };
}

// ---------- request rate (wrk for GET, ab for HEAD) ----------

export interface RateResult {
  tool: string;
  rps: number;
  p50ms: number;
  p99ms: number;
  requests: number;
  errors: number;
  /** Output when it could not be parsed or showed errors. */
  raw?: string;
}

function toMs(value: string, unit: string): number {
  const v = Number(value);
  return unit === 'us' ? v / 1000 : unit === 's' ? v * 1000 : unit === 'm' ? v * 60_000 : v;
}

/** `wrk -t2 -c32 -d<seconds>s --latency -H 'Accept: ...' URL` */
export async function wrkGet(url: string, seconds: number, accept: string): Promise<RateResult> {
  const r = await run('wrk', ['-t2', '-c32', `-d${seconds}s`, '--timeout', '10s', '--latency', '-H', `Accept: ${accept}`, url], {
    timeoutMs: (seconds + 30) * 1000,
  });
  const out = r.stdout + r.stderr;
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
  const p50 = /^\s*50%\s+([\d.]+)(us|ms|s|m)\s*$/m.exec(out);
  const p99 = /^\s*99%\s+([\d.]+)(us|ms|s|m)\s*$/m.exec(out);
  const total = /(\d+) requests in/.exec(out);
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(out);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors = Number(non2xx?.[1] ?? 0) + (sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0);
  const result: RateResult = {
    tool: 'wrk -t2 -c32',
    rps: rps ? Number(rps[1]) : NaN,
    p50ms: p50 ? toMs(p50[1]!, p50[2]!) : NaN,
    p99ms: p99 ? toMs(p99[1]!, p99[2]!) : NaN,
    requests: Number(total?.[1] ?? 0),
    errors,
  };
  if (!rps || errors > 0 || result.requests === 0) result.raw = out.slice(0, 2000);
  return result;
}

/**
 * HEAD with ApacheBench (`ab -k -i -c32 -t<seconds>`): wrk 4.1 cannot do HEAD (its parser waits
 * for a body that never comes). ab is single-threaded, so its ceiling is lower than wrk's.
 */
export async function abHead(url: string, seconds: number, accept: string, tmp: string): Promise<RateResult> {
  const csv = join(tmp, `ab-${process.pid}-${Date.now()}.csv`);
  const r = await run(
    'ab',
    ['-q', '-k', '-i', '-c', '32', '-t', String(seconds), '-n', '100000000', '-s', '10', '-H', `Accept: ${accept}`, '-e', csv, url],
    {
      timeoutMs: (seconds + 30) * 1000,
    },
  );
  const out = r.stdout + r.stderr;
  const rps = /Requests per second:\s+([\d.]+)/.exec(out);
  const complete = /Complete requests:\s+(\d+)/.exec(out);
  const failed = /Failed requests:\s+(\d+)/.exec(out);
  const non2xx = /Non-2xx responses:\s+(\d+)/.exec(out);
  let p50 = NaN;
  let p99 = NaN;
  try {
    const rows = (await readFile(csv, 'utf8')).split('\n');
    for (const row of rows) {
      const [pct, ms] = row.split(',');
      if (pct === '50') p50 = Number(ms);
      if (pct === '99') p99 = Number(ms);
    }
  } catch {
    // no csv
  }
  const errors = Number(failed?.[1] ?? 0) + Number(non2xx?.[1] ?? 0);
  const result: RateResult = {
    tool: 'ab -k -c32',
    rps: rps ? Number(rps[1]) : NaN,
    p50ms: p50,
    p99ms: p99,
    requests: Number(complete?.[1] ?? 0),
    errors,
  };
  if (!rps || errors > 0 || r.code !== 0) result.raw = out.slice(0, 2000);
  return result;
}

// ---------- memory sampling ----------

/** Samples the RSS of a process tree every `intervalMs`; the peak is the largest sum seen. */
export class RssSampler {
  private timer: NodeJS.Timeout | undefined;
  peak = 0;
  samples = 0;
  private pids: number[] = [];
  private lastTreeAt = 0;

  constructor(
    private readonly pid: number,
    private readonly intervalMs = 100,
  ) {}

  /** Current RSS sum of the tree, in bytes. */
  current(): number {
    if (Date.now() - this.lastTreeAt > 1000) {
      this.pids = processTree(this.pid);
      this.lastTreeAt = Date.now();
    }
    let sum = 0;
    for (const p of this.pids) sum += memOf(p)?.rss ?? 0;
    return sum;
  }

  start(): this {
    this.timer = setInterval(() => {
      const v = this.current();
      this.samples++;
      if (v > this.peak) this.peak = v;
    }, this.intervalMs);
    this.timer.unref();
    return this;
  }

  /** Stops sampling; the peak also takes VmHWM into account when the tree is a single process. */
  stop(): number {
    if (this.timer) clearInterval(this.timer);
    const tree = processTree(this.pid);
    if (tree.length === 1) {
      const m = memOf(this.pid);
      if (m && m.hwm > this.peak) this.peak = m.hwm;
    }
    return this.peak;
  }
}

/** Lets RSS settle after load (GC, freed buffers) before reading it. */
export async function settledRss(sampler: RssSampler, ms = 1500): Promise<number> {
  await sleep(ms);
  return sampler.current();
}
