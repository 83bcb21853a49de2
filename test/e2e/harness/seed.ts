/**
 * Shared setup of the real-client suites (containerd, Docker Engine, cri-o/podman dialect):
 *
 * - two upstreams (CNCF distribution): an open one and one behind htpasswd;
 * - the same fixture set pushed into them under docker.io-style names: a Docker schema2 image, an OCI
 *   image, a multi-arch OCI index (linux/amd64 + linux/arm64/v8), a 3-level repository
 *   `team/project/app`, an image with one 100+ MiB layer, and `team/secret` in the private upstream;
 * - the mirror config (docker.io -> the open upstream, private.example -> the htpasswd one with
 *   credentials, both with `user_agent: oci-registry-e2e`), the mirror process itself;
 * - `client-config` run through the built CLI, so that the configuration each real client reads is
 *   the one the command generates;
 * - assertions on the upstream access logs (only the mirror's User-Agent) and the mirror's request log.
 *
 * Each test file seeds its own upstreams: they are stopped for the offline part of the file.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Test } from 'tap';
import type { TapLike } from './binaries.js';
import { makeImage, makeIndex, writeDirTransport, writeOciLayout, type Image, type Index } from '../../fixtures/images.js';
import { ensureMirrorBuilt, MIRROR_MAIN, REPO_ROOT, startMirrorProcess, type MirrorProcess } from '../../helpers/mirror-process.js';
import { startDockerRegistry, type AccessLogEntry, type DockerRegistry } from './registry.js';
import { pushDir, pushLayout, type Credentials } from './skopeo.js';
import { makeTempDir, sleep } from './util.js';

/** The User-Agent the mirror sends upstream (from its config): anything else in an upstream log is a client bypassing the mirror. */
export const MIRROR_UA = 'oci-registry-e2e';
/** The namespace clients name for the htpasswd upstream. */
export const PRIVATE_NS = 'private.example';
export const PRIVATE_CREDS: Credentials = { username: 'e2e-user', password: 'e2e-pass word' };

export interface SeedImages {
  /** Docker schema2, 2 layers, at `library/alpine:3.19`. */
  docker: Image;
  /** OCI image, 2 layers, at `library/busybox:1.36`. */
  oci: Image;
  /** OCI index linux/amd64 + linux/arm64/v8 at `library/multi:1.0`. */
  multi: Index;
  /** OCI image at `team/project/app:v1`. */
  deep: Image;
  /** OCI image with one 104 MiB layer at `library/large:1`. */
  large: Image;
  /** OCI image at `team/secret:1` in the htpasswd upstream only. */
  secret: Image;
}

/** Repository:tag of each fixture in its upstream (docker.io names without the `docker.io/`). */
export const REFS = {
  docker: 'library/alpine:3.19',
  oci: 'library/busybox:1.36',
  multi: 'library/multi:1.0',
  deep: 'team/project/app:v1',
  large: 'library/large:1',
  secret: 'team/secret:1',
} as const satisfies Record<keyof SeedImages, string>;

/** Repository part of a `repo:tag`. */
export const repoOf = (ref: string): string => ref.slice(0, ref.lastIndexOf(':'));

export const LARGE_LAYER_BYTES = 104 << 20;

export interface Seeded {
  upstream: DockerRegistry;
  privateUpstream: DockerRegistry;
  /** Temp dir for the test file's own files (removed by cleanup()). */
  work: string;
  images: SeedImages;
  /** The mirror's upstream config YAML. */
  configYaml: string;
  /** Stops both upstreams (idempotent): for the offline part. */
  stopUpstreams(): Promise<void>;
  /** Stops the upstreams and removes `work` (unless OCI_E2E_KEEP). */
  cleanup(): Promise<void>;
}

/** Generates the fixtures (deterministic: same digests in every file and run). */
export async function makeSeedImages(): Promise<SeedImages> {
  return {
    docker: await makeImage({ format: 'docker', layers: 2, layerSize: 256 << 10, seed: 101 }),
    oci: await makeImage({ format: 'oci', layers: 2, layerSize: 128 << 10, seed: 102 }),
    multi: makeIndex(
      [
        await makeImage({ format: 'oci', layers: 1, layerSize: 64 << 10, seed: 103, architecture: 'amd64' }),
        await makeImage({ format: 'oci', layers: 1, layerSize: 64 << 10, seed: 104, architecture: 'arm64', variant: 'v8' }),
      ],
      'oci',
    ),
    deep: await makeImage({ format: 'oci', layers: 1, layerSize: 64 << 10, seed: 105 }),
    large: await makeImage({ format: 'oci', layers: 1, layerSize: LARGE_LAYER_BYTES, seed: 106 }),
    secret: await makeImage({ format: 'oci', layers: 1, layerSize: 32 << 10, seed: 107 }),
  };
}

/** The mirror config: docker.io -> open upstream, private.example -> htpasswd upstream with credentials. */
export function mirrorConfigYaml(upstream: DockerRegistry, privateUpstream: DockerRegistry): string {
  const entries = [
    { namespace: 'docker.io', host: upstream.host },
    { namespace: PRIVATE_NS, host: privateUpstream.host, username: PRIVATE_CREDS.username, password: PRIVATE_CREDS.password },
  ];
  return (
    entries
      .map((u) =>
        [
          `- namespace: ${JSON.stringify(u.namespace)}`,
          `  host: ${JSON.stringify(u.host)}`,
          '  tls: false',
          `  user_agent: ${MIRROR_UA}`,
          ...(u.username ? [`  username: ${JSON.stringify(u.username)}`, `  password: ${JSON.stringify(u.password)}`] : []),
        ].join('\n'),
      )
      .join('\n') + '\n'
  );
}

/** Starts the two upstreams and pushes every fixture with skopeo (--all --preserve-digests: exact bytes). */
export async function seedUpstreams(prefix: string): Promise<Seeded> {
  const work = await makeTempDir(prefix);
  const upstream = await startDockerRegistry();
  let privateUpstream: DockerRegistry;
  try {
    privateUpstream = await startDockerRegistry({ htpasswd: PRIVATE_CREDS });
  } catch (e) {
    await upstream.stop();
    throw e;
  }
  const stopUpstreams = async (): Promise<void> => {
    await upstream.stop();
    await privateUpstream.stop();
  };
  const cleanup = async (): Promise<void> => {
    await stopUpstreams();
    if (!process.env.OCI_E2E_KEEP) await rm(work, { recursive: true, force: true });
  };
  try {
    const images = await makeSeedImages();
    const layout = join(work, 'layout');
    await writeOciLayout(layout, [
      { ref: 'oci', image: images.oci },
      { ref: 'multi', index: images.multi },
      { ref: 'deep', image: images.deep },
      { ref: 'large', image: images.large },
      { ref: 'secret', image: images.secret },
    ]);
    // skopeo 1.9 skips Docker media types in an OCI layout: the schema2 image goes through dir:.
    await writeDirTransport(join(work, 'dir-docker'), images.docker);
    await pushDir(join(work, 'dir-docker'), `${upstream.host}/${REFS.docker}`);
    for (const key of ['oci', 'multi', 'deep', 'large'] as const) {
      await pushLayout(layout, key, `${upstream.host}/${REFS[key]}`);
    }
    await pushLayout(layout, 'secret', `${privateUpstream.host}/${REFS.secret}`, PRIVATE_CREDS);
    // The layout holds a 104 MiB blob: not needed any more.
    await rm(layout, { recursive: true, force: true });
    return { upstream, privateUpstream, work, images, configYaml: mirrorConfigYaml(upstream, privateUpstream), stopUpstreams, cleanup };
  } catch (e) {
    await cleanup();
    throw e;
  }
}

/** The mirror on 127.0.0.1 with the seeded config and a filesystem cache under `work`. */
export function startSeededMirror(seeded: Seeded): Promise<MirrorProcess> {
  return startMirrorProcess({ root: join(seeded.work, 'cache'), configYaml: seeded.configYaml });
}

/** The test process's environment without tap's loader hooks (they must not load into child node processes). */
function cleanNodeEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env['NODE_OPTIONS'];
  for (const key of Object.keys(env)) {
    if (key.startsWith('_TAPJS') || key.startsWith('TAPJS_') || key === 'NODE_V8_COVERAGE') delete env[key];
  }
  return env;
}

/** Runs `node dist/cli/main.js GLOBAL client-config ARGS` (the built CLI, as users run it). */
export async function runClientConfig(
  args: readonly string[],
  globalArgs: readonly string[] = [],
): Promise<{ stdout: string; stderr: string }> {
  const override = process.env['OCI_E2E_MIRROR_MAIN'];
  if (!override) await ensureMirrorBuilt();
  const main = override ?? MIRROR_MAIN;
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [main, ...globalArgs, 'client-config', ...args],
      { cwd: REPO_ROOT, env: cleanNodeEnv(), timeout: 60_000 },
      (error, stdout, stderr) => {
        if (error) {
          reject(
            new Error(
              `oci-registry ${[...globalArgs, 'client-config', ...args].join(' ')} failed (${error.code ?? error.signal}):\n${stderr}`,
            ),
          );
          return;
        }
        resolve({ stdout, stderr });
      },
    );
  });
}

export const sha256Hex = (data: Buffer): string => 'sha256:' + createHash('sha256').update(data).digest('hex');
export const hashFile = async (path: string): Promise<string> => sha256Hex(await readFile(path));

/** Asserts that a skopeo `dir:` copy holds `image` exactly: manifest (at `manifestFile`), config and layers. */
export async function assertDirHoldsImage(t: Test, dir: string, image: Image, manifestFile = 'manifest.json'): Promise<void> {
  t.equal(
    await hashFile(join(dir, manifestFile)),
    image.manifestDigest,
    `${manifestFile} is the upstream manifest ${image.manifestDigest.slice(0, 19)}`,
  );
  for (const digest of [image.configDigest, ...image.layers.map((l) => l.digest)]) {
    const path = join(dir, digest.slice('sha256:'.length));
    t.equal(await hashFile(path).catch((e: Error) => e.message), digest, `blob ${digest.slice(0, 19)} hashes to its digest`);
  }
}

// ---- upstream access logs -------------------------------------------------------------------------

/** The upstream's access log entries after `mark` (a length of accessLog() taken earlier). */
export const upstreamSince = (registry: DockerRegistry, mark: number): AccessLogEntry[] => registry.accessLog().slice(mark);

/**
 * Asserts that every upstream request after `mark` carried the mirror's User-Agent (the client never
 * went around the mirror) and, with `repo`, that the mirror fetched that repository's manifest.
 */
export function assertOnlyMirrorUpstream(t: Test, registry: DockerRegistry, mark: number, repo?: string): void {
  const entries = upstreamSince(registry, mark);
  t.same(
    entries.filter((e) => e.userAgent !== MIRROR_UA).map((e) => e.line),
    [],
    `every request to upstream ${registry.host} came from the mirror`,
  );
  if (repo) {
    const fetched = entries.filter((e) => e.userAgent === MIRROR_UA && e.path.startsWith(`/v2/${repo}/manifests/`));
    t.ok(fetched.length > 0, `the mirror fetched /v2/${repo}/manifests/... from the upstream`, {
      upstreamRequests: entries.map((e) => `${e.method} ${e.url} ${e.status} ${e.userAgent}`),
    });
  }
}

// ---- mirror request log ---------------------------------------------------------------------------

export interface MirrorRequestLine {
  method: string;
  path: string;
  namespace?: string;
  repository?: string;
  via?: string;
  status: number;
  cache?: string;
  [key: string]: unknown;
}

/** The mirror's `"msg":"request"` lines after `mark` (a length of mirror.logs() taken earlier). */
export function mirrorRequests(mirror: MirrorProcess, mark = 0): MirrorRequestLine[] {
  return mirror
    .logs()
    .slice(mark)
    .filter((l) => l['msg'] === 'request' && typeof l['path'] === 'string')
    .map((l) => l as unknown as MirrorRequestLine);
}

export interface ExpectedServe {
  /** Repository the mirror resolved (upstream name, e.g. `library/alpine`). */
  repository: string;
  namespace: string;
  via: 'ns' | 'path' | 'default' | 'header';
  /** Also require a successful blob request for the repository (default true). */
  blobs?: boolean;
}

/**
 * Asserts that the mirror served the client's pull of `repository` after `mark`: a 200 manifest GET
 * (the request line is written when the response ends: polled for a few seconds), every request for the
 * repository resolved to `namespace` via `via`, none failed with 5xx, and (by default) a blob came back.
 */
export async function assertMirrorServed(
  t: Test,
  mirror: MirrorProcess,
  mark: number,
  expected: ExpectedServe,
): Promise<MirrorRequestLine[]> {
  const mine = (): MirrorRequestLine[] => mirrorRequests(mirror, mark).filter((l) => l.repository === expected.repository);
  const ok = (lines: MirrorRequestLine[]): boolean =>
    lines.some((l) => l.method === 'GET' && l.path.includes('/manifests/') && l.status === 200) &&
    (expected.blobs === false ||
      lines.some((l) => l.method === 'GET' && l.path.includes('/blobs/') && (l.status === 200 || l.status === 206)));
  const deadline = Date.now() + 5_000;
  let lines = mine();
  while (!ok(lines) && Date.now() < deadline) {
    await sleep(50);
    lines = mine();
  }
  const summary = lines.map((l) => `${l.method} ${l.path} ${l.status} via=${l.via} ns=${l.namespace} cache=${l.cache}`);
  t.ok(
    lines.some((l) => l.method === 'GET' && l.path.includes('/manifests/') && l.status === 200),
    `the mirror served a manifest of ${expected.repository}`,
    { mirrorRequests: summary, lastLogLines: mirror.logLines.slice(-10) },
  );
  if (expected.blobs !== false) {
    t.ok(
      lines.some((l) => l.method === 'GET' && l.path.includes('/blobs/') && (l.status === 200 || l.status === 206)),
      `the mirror served blobs of ${expected.repository}`,
      { mirrorRequests: summary },
    );
  }
  const wrong = lines.filter((l) => l.via !== expected.via || l.namespace !== expected.namespace);
  t.same(
    wrong.map((l) => `${l.method} ${l.path} via=${l.via} ns=${l.namespace}`),
    [],
    `every request for ${expected.repository} resolved to ${expected.namespace} via ${expected.via}`,
  );
  t.same(
    lines.filter((l) => l.status >= 500).map((l) => `${l.method} ${l.path} ${l.status}`),
    [],
    'no 5xx from the mirror',
  );
  return lines;
}

// ---- privileges ----------------------------------------------------------------------------------

/**
 * True when running as root (a private containerd or dockerd needs it). Otherwise, like requireBinary:
 * fails `t` under CI, and elsewhere prints a loud line and ends `t` as skipped.
 */
export function requireRoot(t: TapLike, what: string): boolean {
  if (process.getuid?.() === 0) return true;
  const message = `NOT ROOT: ${what} needs root (a private daemon, mounts)`;
  if (process.env.CI) {
    process.stderr.write(`# ${message} (CI is set: failing)\n`);
    t.fail(message);
    return false;
  }
  process.stderr.write(`# ${message}\n`);
  t.comment(message);
  t.plan(0, message);
  return false;
}

// ---- mounts ---------------------------------------------------------------------------------------

/** Mount points at or under `dir` (from /proc/self/mountinfo), deepest first. */
export function mountsUnder(dir: string): string[] {
  let text: string;
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  const base = dir.replace(/\/+$/, '');
  const points = text
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => p !== undefined)
    .map(unescape)
    .filter((p) => p === base || p.startsWith(base + '/'));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/**
 * Unmounts every mount point under `dir` — a temp dir this test created — one specific path at a time,
 * deepest first (`umount PATH`, then `umount -l PATH` if busy). Returns what it unmounted.
 */
export async function unmountUnder(dir: string): Promise<string[]> {
  const done: string[] = [];
  for (const point of mountsUnder(dir)) {
    const attempt = (args: string[]): Promise<boolean> =>
      new Promise((resolve) => execFile('umount', [...args, point], { timeout: 30_000 }, (error) => resolve(!error)));
    if ((await attempt([])) || (await attempt(['-l']))) done.push(point);
  }
  return done;
}

/** Runs a program; resolves with stdout/stderr, rejects with both and the exit status. */
export function run(
  bin: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; timeoutMs?: number; redact?: (s: string) => string } = {},
): Promise<{ stdout: string; stderr: string }> {
  const timeout = options.timeoutMs ?? 180_000;
  return new Promise((resolve, reject) => {
    execFile(
      bin,
      args,
      { env: options.env ?? process.env, timeout, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) {
          const e = error as NodeJS.ErrnoException & { killed?: boolean; signal?: string };
          const why = e.killed ? `killed after ${timeout} ms` : `exit ${e.code ?? e.signal}`;
          const cmd = `${bin} ${args.join(' ')}`;
          reject(
            new Error(`${options.redact ? options.redact(cmd) : cmd} failed (${why}):\n${stderr.trim()}\n${stdout.trim().slice(-2000)}`),
          );
          return;
        }
        resolve({ stdout, stderr });
      },
    );
  });
}
