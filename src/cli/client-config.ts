/**
 * `oci-registry client-config <containerd|crio|docker>`: prints (or writes) the configuration that makes
 * each client pull through the mirror, in the dialect it speaks:
 *
 * - containerd: one `hosts.toml` per namespace (`<dir>/<namespace>/hosts.toml`); containerd appends
 *   `?ns=<namespace>` to every request it sends to a mirror host.
 * - cri-o / podman / skopeo: `registries.conf` `[[registry]]` entries whose mirror location is
 *   `<mirror>/<namespace>` (the path-prefix dialect; `host_port` for a namespace with a port, which image
 *   references cannot hold in a path).
 * - Docker Engine: the `daemon.json` `registry-mirrors` fragment (Docker Hub only, plain paths).
 *
 * The render functions are pure; registerClientConfig only parses flags and does the I/O.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { ConfigError, parseUpstreamYaml } from '../config/upstreams.js';
import type { UpstreamConfig } from '../config/types.js';
import { DOCKER_HUB, registryHostOf } from '../oci/docker-hub.js';
import { isValidNamespace } from '../oci/namespace.js';
import { parsePathHostPort, pathSegmentFor } from '../resolve/path-namespace.js';
import { errorText } from '../error-text.js';

export const DEFAULT_CONTAINERD_DIR = '/etc/containerd/certs.d';

/** A mirror address parsed from `--mirror`. */
export interface MirrorAddress {
  scheme: 'http' | 'https';
  /** `host` or `host:port` (IPv6 in brackets), as written in URLs. */
  host: string;
  /** `scheme://host`, no trailing slash. */
  url: string;
  /** Whether a scheme was written (`mirror:8080` has none). */
  explicitScheme: boolean;
}

/**
 * Parses `http://mirror:8080`, `https://mirror.example` or (`allowBare`) `mirror:8080`. A path other than
 * `/`, a query, a fragment or credentials are refused: the mirror serves `/v2/` at its root, and the
 * clients would put anything else in front of it.
 */
export function parseMirrorAddress(value: string, allowBare: boolean): MirrorAddress {
  const raw = value.trim();
  const hasScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw);
  if (!hasScheme && !allowBare) {
    throw new ConfigError(`--mirror: expected a URL like http://mirror:8080, got ${JSON.stringify(value)}`);
  }
  let url: URL;
  try {
    url = new URL(hasScheme ? raw : `http://${raw}`);
  } catch {
    throw new ConfigError(`--mirror: ${JSON.stringify(value)} is not a host[:port] or URL`);
  }
  const scheme = url.protocol.slice(0, -1);
  if (scheme !== 'http' && scheme !== 'https') {
    throw new ConfigError(`--mirror: the scheme must be http or https, got ${JSON.stringify(scheme)}`);
  }
  if (url.username || url.password) throw new ConfigError('--mirror: must not contain credentials');
  if ((url.pathname !== '/' && url.pathname !== '') || url.search || url.hash) {
    throw new ConfigError(
      `--mirror: must be scheme://host[:port] without a path (the mirror serves /v2/ at its root), got ${JSON.stringify(value)}`,
    );
  }
  if (!url.hostname) throw new ConfigError(`--mirror: no host in ${JSON.stringify(value)}`);
  return { scheme, host: url.host, url: `${scheme}://${url.host}`, explicitScheme: hasScheme };
}

/** Splits `docker.io,ghcr.io` lists (flags may repeat), validates, drops duplicates, keeps order. */
export function parseNamespaceList(values: readonly string[]): string[] {
  const out: string[] = [];
  for (const v of values) {
    for (const part of v.split(',')) {
      const ns = part.trim();
      if (!ns) continue;
      if (!isValidNamespace(ns)) {
        throw new ConfigError(`--namespace: ${JSON.stringify(ns)} is not a registry host name like docker.io or registry.local:5000`);
      }
      if (!out.includes(ns)) out.push(ns);
    }
  }
  return out;
}

/**
 * The `server` of a hosts.toml: the registry the image reference names, so that containerd falls back to
 * it when the mirror fails. `https://` unless the upstream config fetches that same host over plain HTTP.
 */
export function serverUrlFor(namespace: string, upstream?: Pick<UpstreamConfig, 'host' | 'tls'>): string {
  const host = registryHostOf(namespace);
  const plain = upstream !== undefined && !upstream.tls && upstream.host === host;
  return `${plain ? 'http' : 'https'}://${host}`;
}

const tomlString = (s: string): string => JSON.stringify(s);

export interface ContainerdHostsOptions {
  mirror: MirrorAddress;
  /** Overrides the fallback `server` (see serverUrlFor). */
  server?: string;
  /** `skip_verify = true` for an https mirror with a certificate the node does not trust. */
  skipVerify?: boolean;
  /** `ca = "<path>"` for an https mirror signed by a private CA. */
  caFile?: string;
}

/** One `hosts.toml` for `namespace`: the mirror first (pull + resolve), the registry itself as fallback. */
export function renderContainerdHostsToml(namespace: string, options: ContainerdHostsOptions): string {
  const server = options.server ?? serverUrlFor(namespace);
  const lines = [
    `# ${namespace}: pull through the oci-registry mirror at ${options.mirror.url}.`,
    '# containerd tries the [host] entries in order, then falls back to `server`.',
    '# Generated by: oci-registry client-config containerd',
    `server = ${tomlString(server)}`,
    '',
    `[host.${tomlString(options.mirror.url)}]`,
    '  capabilities = ["pull", "resolve"]',
  ];
  if (options.mirror.scheme === 'https' && options.skipVerify) lines.push('  skip_verify = true');
  if (options.mirror.scheme === 'https' && options.caFile) lines.push(`  ca = ${tomlString(options.caFile)}`);
  return lines.join('\n') + '\n';
}

export interface ContainerdFile {
  namespace: string;
  /** `<dir>/<namespace>/hosts.toml` */
  path: string;
  content: string;
}

/** Every hosts.toml for the namespaces, with its path under `dir` (containerd's `config_path`). */
export function renderContainerdFiles(
  namespaces: readonly string[],
  dir: string,
  options: ContainerdHostsOptions & { upstreams?: ReadonlyMap<string, UpstreamConfig> },
): ContainerdFile[] {
  return namespaces.map((namespace) => ({
    namespace,
    path: join(dir, namespace, 'hosts.toml'),
    content: renderContainerdHostsToml(namespace, {
      ...options,
      server: options.server ?? serverUrlFor(namespace, options.upstreams?.get(namespace)),
    }),
  }));
}

export interface CrioOptions {
  mirror: MirrorAddress;
  /** `insecure = true` on the mirror entries; default: true unless the mirror was given as https://. */
  insecure?: boolean;
}

/**
 * registries.conf (v2) entries: each namespace keeps its own location and gets the mirror
 * `<mirror host>/<path segment>` (cri-o, podman, buildah and skopeo send `/v2/<segment>/<repo>/...`).
 * The segment is the namespace, or `host_port` when it has a port (see path-namespace.ts). An IPv6
 * literal namespace cannot be written in a path at all: it gets a comment instead of an entry.
 */
export function renderCrioRegistriesConf(namespaces: readonly string[], options: CrioOptions): string {
  const insecure = options.insecure ?? options.mirror.scheme !== 'https';
  const lines = [
    `# Pull through the oci-registry mirror at ${options.mirror.host} (path-prefix dialect).`,
    '# Add to /etc/containers/registries.conf, or save as /etc/containers/registries.conf.d/50-oci-registry.conf.',
    '# Generated by: oci-registry client-config crio',
  ];
  for (const ns of namespaces) {
    const segment = pathSegmentFor(ns);
    if (segment === undefined) {
      lines.push('', `# ${ns}: not mirrored here: ${IPV6_PATH_NOTE}`);
      continue;
    }
    lines.push(
      '',
      '[[registry]]',
      `prefix = ${tomlString(ns)}`,
      `location = ${tomlString(ns)}`,
      '',
      '[[registry.mirror]]',
      ...(ns.includes(':') ? [`# ${segment} is ${ns}: image references allow no ':' inside a path.`] : []),
      `location = ${tomlString(`${options.mirror.host}/${segment}`)}`,
      `insecure = ${insecure}`,
    );
  }
  return lines.join('\n') + '\n';
}

const IPV6_PATH_NOTE =
  'an IPv6 address cannot be written in a mirror path; give the registry a DNS name, or use containerd (hosts.toml, ?ns=)';

/**
 * What the operator should know about the crio output, one line each: IPv6 namespaces left out, and
 * dotless `name:port` namespaces that the mirror only reads from a `name_port` path when its upstream
 * config lists them (a dotless `name_port` is otherwise a repository name).
 */
export function crioNotes(namespaces: readonly string[], configured: ReadonlySet<string>): string[] {
  // `configured`: the upstream config's namespaces, in lower case.
  const notes: string[] = [];
  for (const ns of namespaces) {
    const segment = pathSegmentFor(ns);
    if (segment === undefined) {
      notes.push(`note: ${ns} was left out: ${IPV6_PATH_NOTE}.`);
      continue;
    }
    const hostPort = ns.includes(':') ? parsePathHostPort(segment) : undefined;
    if (hostPort && !hostPort.host.includes('.') && hostPort.host !== 'localhost' && !configured.has(ns.toLowerCase())) {
      notes.push(
        `note: the mirror reads the path ${segment}/... as namespace ${ns} only when ${ns} is in its upstream config ` +
          `(without a dot, ${segment} is otherwise a repository name).`,
      );
    }
  }
  return notes;
}

/** The daemon.json fragment for Docker Engine, as an object. */
export function dockerDaemonConfig(mirror: MirrorAddress): { 'registry-mirrors': string[]; 'insecure-registries'?: string[] } {
  return {
    'registry-mirrors': [mirror.url],
    ...(mirror.scheme === 'http' ? { 'insecure-registries': [mirror.host] } : {}),
  };
}

/** The daemon.json fragment for Docker Engine, pretty-printed. */
export function renderDockerDaemonJson(mirror: MirrorAddress): string {
  return JSON.stringify(dockerDaemonConfig(mirror), null, 2) + '\n';
}

export const DOCKER_HUB_ONLY_NOTE =
  'note: Docker Engine uses registry-mirrors for Docker Hub (docker.io) images only; images of other registries ' +
  'are pulled from those registries directly. Reach other namespaces through the mirror by name ' +
  '(docker pull MIRROR/ghcr.io/org/app:tag) or use containerd / cri-o. Merge this into /etc/docker/daemon.json ' +
  'and restart dockerd.';

/** Namespaces from `--namespace`, else those in the upstream config file, else docker.io. */
export function defaultNamespaces(flagValues: readonly string[], upstreams: readonly UpstreamConfig[]): string[] {
  const given = parseNamespaceList(flagValues);
  if (given.length > 0) return given;
  const fromConfig = upstreams.map((u) => u.namespace);
  return fromConfig.length > 0 ? [...new Set(fromConfig)] : [DOCKER_HUB];
}

function readUpstreams(file: string | undefined): UpstreamConfig[] {
  if (!file) return [];
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`${file}: cannot read upstream config: ${errorText(e)}`);
  }
  return parseUpstreamYaml(text, file);
}

function collect(value: string, previous: string[] | undefined): string[] {
  if (!value.trim()) throw new InvalidArgumentError('expected a namespace like docker.io');
  return [...(previous ?? []), value];
}

export interface ClientConfigIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  writeFile: (path: string, content: string) => void;
}

const defaultIo: ClientConfigIo = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  writeFile: (path, content) => {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, content);
  },
};

/**
 * Adds `client-config` with the subcommands containerd, crio and docker to `program`. The global
 * `--upstream-config-file` supplies the default namespace list.
 */
export function registerClientConfig(program: Command, io: ClientConfigIo = defaultIo): Command {
  const globalConfigFile = (): string | undefined => (program.opts() as { upstreamConfigFile?: string }).upstreamConfigFile;
  const namespaceOption = (): Option =>
    new Option(
      '--namespace <list>',
      'namespaces to mirror, comma-separated or repeated (default: those in --upstream-config-file, else docker.io)',
    ).argParser(collect);

  const cmd = program
    .command('client-config')
    .description('print the configuration that points containerd, cri-o/podman or Docker at this mirror');

  cmd
    .command('containerd')
    .description('write <dir>/<namespace>/hosts.toml files (containerd config_path; ctr --hosts-dir)')
    .addOption(new Option('--mirror <url>', 'the mirror as clients reach it, e.g. http://mirror:8080').makeOptionMandatory())
    .addOption(new Option('--dir <dir>', 'containerd certs.d directory (config_path)').default(DEFAULT_CONTAINERD_DIR))
    .addOption(namespaceOption())
    .addOption(new Option('--skip-verify', 'https mirror: do not verify its certificate (skip_verify = true)'))
    .addOption(new Option('--ca-file <path>', 'https mirror: CA certificate that signed its certificate'))
    .addOption(new Option('--print', 'print the files instead of writing them'))
    .action((opts: { mirror: string; dir: string; namespace?: string[]; skipVerify?: boolean; caFile?: string; print?: boolean }) => {
      const mirror = parseMirrorAddress(opts.mirror, false);
      const upstreams = readUpstreams(globalConfigFile());
      const namespaces = defaultNamespaces(opts.namespace ?? [], upstreams);
      const files = renderContainerdFiles(namespaces, opts.dir, {
        mirror,
        skipVerify: opts.skipVerify === true,
        ...(opts.caFile !== undefined ? { caFile: opts.caFile } : {}),
        upstreams: new Map(upstreams.map((u) => [u.namespace, u])),
      });
      if (opts.print) {
        io.stdout(files.map((f) => `# ---- ${f.path}\n${f.content}`).join('\n'));
        return;
      }
      for (const f of files) {
        io.writeFile(f.path, f.content);
        io.stdout(`wrote ${f.path}\n`);
      }
      io.stderr(
        `note: containerd reads these with config_path = ${JSON.stringify(opts.dir)} ` +
          '(CRI: [plugins."io.containerd.grpc.v1.cri".registry]); ctr needs --hosts-dir. No restart is needed for hosts.toml changes.\n',
      );
    });

  cmd
    .command('crio')
    .description(
      'print registries.conf entries for cri-o, podman, buildah and skopeo (mirror location <mirror>/<namespace>, host_port for a port)',
    )
    .addOption(
      new Option(
        '--mirror <host:port>',
        'the mirror as clients reach it, e.g. mirror:8080 (http:// or https:// accepted)',
      ).makeOptionMandatory(),
    )
    .addOption(namespaceOption())
    .addOption(new Option('--secure', 'the mirror serves verified TLS: insecure = false (default for https:// mirrors)'))
    .action((opts: { mirror: string; namespace?: string[]; secure?: boolean }) => {
      const mirror = parseMirrorAddress(opts.mirror, true);
      const upstreams = readUpstreams(globalConfigFile());
      const namespaces = defaultNamespaces(opts.namespace ?? [], upstreams);
      io.stdout(renderCrioRegistriesConf(namespaces, { mirror, ...(opts.secure ? { insecure: false } : {}) }));
      const configured = new Set(upstreams.map((u) => u.namespace.toLowerCase()));
      for (const note of crioNotes(namespaces, configured)) io.stderr(`${note}\n`);
    });

  cmd
    .command('docker')
    .description('print the daemon.json fragment for Docker Engine (Docker Hub images only)')
    .addOption(new Option('--mirror <url>', 'the mirror as clients reach it, e.g. http://mirror:8080').makeOptionMandatory())
    .action((opts: { mirror: string }) => {
      const mirror = parseMirrorAddress(opts.mirror, false);
      io.stdout(renderDockerDaemonJson(mirror));
      io.stderr(`${DOCKER_HUB_ONLY_NOTE}\n`);
    });

  return cmd;
}
