/**
 * skopeo with a private configuration: its own policy.json (insecureAcceptAnything), an empty
 * registries.d, an empty auth file and, unless one is given, an empty registries.conf - nothing from
 * /etc/containers or the user's home leaks in. Plain HTTP registries need `tlsVerify: false`
 * (the default here), which maps to --tls-verify=false / --src-tls-verify=false / --dest-tls-verify=false.
 */
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { findBinary } from './binaries.js';
import { makeTempDir } from './util.js';

export interface Credentials {
  username: string;
  password: string;
}

export interface SkopeoRunOptions {
  /** A registries.conf for this invocation (see writeMirrorRegistriesConf); default: an empty one. */
  registriesConf?: string;
  overrideArch?: string;
  overrideOs?: string;
  overrideVariant?: string;
  /** Default 180 s. */
  timeoutMs?: number;
  /** Adds --debug (its output goes to stderr, which errors include). */
  debug?: boolean;
}

export interface SkopeoResult {
  stdout: Buffer;
  stderr: string;
}

interface Context {
  dir: string;
  policy: string;
  registriesD: string;
  registriesConf: string;
  authFile: string;
  tmp: string;
}

let contextPromise: Promise<Context> | undefined;

/** The private config directory, created once per test process. */
export function skopeoContext(): Promise<Context> {
  contextPromise ??= (async () => {
    const dir = await makeTempDir('skopeo');
    if (!process.env.OCI_E2E_KEEP) process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    const ctx: Context = {
      dir,
      policy: join(dir, 'policy.json'),
      registriesD: join(dir, 'registries.d'),
      registriesConf: join(dir, 'registries.conf'),
      authFile: join(dir, 'auth.json'),
      tmp: join(dir, 'tmp'),
    };
    await mkdir(ctx.registriesD, { recursive: true });
    await mkdir(ctx.tmp, { recursive: true });
    await writeFile(ctx.policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
    await writeFile(ctx.registriesConf, 'unqualified-search-registries = []\n');
    await writeFile(ctx.authFile, '{"auths":{}}\n', { mode: 0o600 });
    return ctx;
  })();
  return contextPromise;
}

const SECRET_FLAGS = new Set(['--creds', '--src-creds', '--dest-creds', '--password', '--registry-token']);

function redact(args: readonly string[]): string[] {
  return args.map((a, i) => {
    const eq = a.indexOf('=');
    if (eq > 0 && SECRET_FLAGS.has(a.slice(0, eq))) return `${a.slice(0, eq)}=***`;
    return i > 0 && SECRET_FLAGS.has(args[i - 1] ?? '') ? '***' : a;
  });
}

/** Image references: `docker://...`, `oci:DIR:REF`, `dir:DIR`, ... kept; a bare `host/name:tag` gets `docker://`. */
export function transportRef(ref: string): string {
  return /^(docker|oci|oci-archive|dir|docker-archive|docker-daemon|containers-storage|tarball|sif|ostree):/.test(ref)
    ? ref
    : `docker://${ref}`;
}

/** Runs `skopeo <global flags> <args>`; rejects with the exit status and stderr on failure. */
export async function runSkopeo(args: readonly string[], options: SkopeoRunOptions = {}): Promise<SkopeoResult> {
  const bin = findBinary('skopeo');
  if (!bin) throw new Error('MISSING BINARY skopeo: install it with apt-get install skopeo');
  const ctx = await skopeoContext();
  const global = [
    '--policy',
    ctx.policy,
    '--registries.d',
    ctx.registriesD,
    '--registries-conf',
    options.registriesConf ?? ctx.registriesConf,
    '--tmpdir',
    ctx.tmp,
    ...(options.overrideArch ? ['--override-arch', options.overrideArch] : []),
    ...(options.overrideOs ? ['--override-os', options.overrideOs] : []),
    ...(options.overrideVariant ? ['--override-variant', options.overrideVariant] : []),
    ...(options.debug ? ['--debug'] : []),
  ];
  const fullArgs = [...global, ...args];
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    REGISTRY_AUTH_FILE: ctx.authFile,
    CONTAINERS_REGISTRIES_CONF: options.registriesConf ?? ctx.registriesConf,
    CONTAINERS_POLICY_JSON: ctx.policy,
    // No proxy for the loopback registries.
    NO_PROXY: '127.0.0.1,localhost',
    no_proxy: '127.0.0.1,localhost',
  };
  const timeout = options.timeoutMs ?? 180_000;
  return new Promise<SkopeoResult>((resolve, reject) => {
    execFile(
      bin,
      fullArgs,
      { env, timeout, killSignal: 'SIGKILL', encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const err = stderr.toString('utf8');
        if (error) {
          const e = error as NodeJS.ErrnoException & { code?: number | string; killed?: boolean; signal?: string };
          const why = e.killed ? `killed after ${timeout} ms timeout` : `exit ${e.code ?? e.signal}`;
          reject(new Error(`skopeo ${redact(args).join(' ')} failed (${why}):\n${err.trim()}`));
          return;
        }
        resolve({ stdout, stderr: err });
      },
    );
  });
}

function credsFlag(flag: string, creds: Credentials | undefined): string[] {
  return creds ? [flag, `${creds.username}:${creds.password}`] : [];
}

export interface CopyOptions extends SkopeoRunOptions {
  /** --all: every instance of an index. */
  all?: boolean;
  /** --preserve-digests: fail rather than change any manifest. */
  preserveDigests?: boolean;
  srcCreds?: Credentials;
  destCreds?: Credentials;
  /** TLS verification for docker:// source / destination. Default false (plain HTTP registries). */
  srcTlsVerify?: boolean;
  destTlsVerify?: boolean;
  /** --format oci|v2s2|v2s1; default: keep the source's. */
  format?: 'oci' | 'v2s2' | 'v2s1';
  /** --retry-times, default 0 so that failures show at once. */
  retryTimes?: number;
}

/** `skopeo copy SRC DEST`; references without a transport are docker:// references. */
export async function copy(src: string, dest: string, options: CopyOptions = {}): Promise<SkopeoResult> {
  return runSkopeo(
    [
      'copy',
      `--src-tls-verify=${options.srcTlsVerify ?? false}`,
      `--dest-tls-verify=${options.destTlsVerify ?? false}`,
      '--retry-times',
      String(options.retryTimes ?? 0),
      ...(options.all ? ['--all'] : []),
      ...(options.preserveDigests ? ['--preserve-digests'] : []),
      ...(options.format ? ['--format', options.format] : []),
      ...credsFlag('--src-creds', options.srcCreds),
      ...credsFlag('--dest-creds', options.destCreds),
      ...(options.srcCreds ? [] : /^docker:\/\//.test(transportRef(src)) ? ['--src-no-creds'] : []),
      transportRef(src),
      transportRef(dest),
    ],
    options,
  );
}

/**
 * Pushes `REF` of the OCI layout at `layoutDir` to `destRef` (a docker reference, with or without
 * `docker://`) with --all --preserve-digests, so that an index is pushed with every child and no
 * manifest is rewritten: the registry then holds exactly the fixture's bytes.
 */
export async function pushLayout(
  layoutDir: string,
  ref: string,
  destRef: string,
  creds?: Credentials,
  options: SkopeoRunOptions = {},
): Promise<SkopeoResult> {
  return copy(`oci:${layoutDir}:${ref}`, destRef, {
    ...options,
    all: true,
    preserveDigests: true,
    ...(creds ? { destCreds: creds } : {}),
  });
}

/**
 * Pushes a `dir:` transport directory (see writeDirTransport in test/fixtures/images.ts) to `destRef`
 * with --all --preserve-digests. This is the way to push Docker schema2 images and manifest lists, which
 * skopeo 1.9 does not read from an OCI layout.
 */
export async function pushDir(dir: string, destRef: string, creds?: Credentials, options: SkopeoRunOptions = {}): Promise<SkopeoResult> {
  return copy(`dir:${dir}`, destRef, {
    ...options,
    all: true,
    preserveDigests: true,
    ...(creds ? { destCreds: creds } : {}),
  });
}

export interface InspectOptions extends SkopeoRunOptions {
  /** --raw: the manifest bytes exactly as served. */
  raw?: boolean;
  /** --config (with raw: the config blob's bytes). */
  config?: boolean;
  creds?: Credentials;
  tlsVerify?: boolean;
  retryTimes?: number;
}

/** `skopeo inspect` with --no-tags (the tag list needs an extra endpoint); returns stdout bytes. */
export async function inspect(ref: string, options: InspectOptions = {}): Promise<Buffer> {
  const { stdout } = await runSkopeo(
    [
      'inspect',
      '--no-tags',
      `--tls-verify=${options.tlsVerify ?? false}`,
      '--retry-times',
      String(options.retryTimes ?? 0),
      ...(options.raw ? ['--raw'] : []),
      ...(options.config ? ['--config'] : []),
      ...(options.creds ? ['--creds', `${options.creds.username}:${options.creds.password}`] : ['--no-creds']),
      transportRef(ref),
    ],
    options,
  );
  return stdout;
}

/** The raw manifest bytes of `ref` (skopeo inspect --raw). */
export function inspectRaw(ref: string, options: Omit<InspectOptions, 'raw' | 'config'> = {}): Promise<Buffer> {
  return inspect(ref, { ...options, raw: true });
}

/** skopeo inspect's JSON summary (Digest, Architecture, Os, Layers, ...). */
export async function inspectJson(ref: string, options: Omit<InspectOptions, 'raw' | 'config'> = {}): Promise<Record<string, unknown>> {
  return JSON.parse((await inspect(ref, options)).toString('utf8')) as Record<string, unknown>;
}

export interface MirrorRegistryEntry {
  /** The registry clients name, e.g. `docker.io`. */
  prefix: string;
  /** Where it lives without the mirror; default = prefix. Point it at a closed port to forbid fallback. */
  location?: string;
  /** Whether the primary location is plain HTTP / unverified. Default false. */
  insecure?: boolean;
  /** Mirror locations in the cri-o/podman path-prefix dialect, e.g. `127.0.0.1:8080/docker.io`. */
  mirrors: { location: string; insecure?: boolean }[];
}

/**
 * Writes a registries.conf (v2) with `[[registry]]` entries and their `[[registry.mirror]]`s
 * (`insecure = true` by default for mirrors: the test mirror speaks plain HTTP). Returns the path.
 */
export async function writeMirrorRegistriesConf(path: string, entries: MirrorRegistryEntry[]): Promise<string> {
  const q = (s: string): string => JSON.stringify(s);
  const lines = ['unqualified-search-registries = []', ''];
  for (const e of entries) {
    lines.push(
      '[[registry]]',
      `prefix = ${q(e.prefix)}`,
      `location = ${q(e.location ?? e.prefix)}`,
      `insecure = ${e.insecure ?? false}`,
      '',
    );
    for (const m of e.mirrors) {
      lines.push('[[registry.mirror]]', `location = ${q(m.location)}`, `insecure = ${m.insecure ?? true}`, '');
    }
  }
  await writeFile(path, lines.join('\n'));
  return path;
}
