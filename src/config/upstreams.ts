import { readFileSync } from 'node:fs';
import yaml from 'js-yaml';
import { parseDuration } from './duration.js';
import {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_CREDENTIAL_TTL_MS,
  DEFAULT_INVALIDATION_MS,
  DEFAULT_READ_TIMEOUT_MS,
  type MirrorConfig,
  type UpstreamConfig,
} from './types.js';

/**
 * A configuration problem; the message names the file, the entry and the key. One error may carry
 * several problems (all of a config file's, so that one run shows every mistake): one per line.
 */
export class ConfigError extends Error {
  readonly problems: readonly string[];

  constructor(message: string | readonly string[]) {
    const problems = typeof message === 'string' ? [message] : message;
    super(problems.join('\n'));
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** Runs `fn`, adding the problems of a ConfigError it throws to `into`; undefined then. */
function collecting<T>(into: string[], fn: () => T): T | undefined {
  try {
    return fn();
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    into.push(...e.problems);
    return undefined;
  }
}

export interface LoadOptions {
  configFile?: string | undefined;
  defaultNamespace?: string | undefined;
  allowUnlisted?: boolean | undefined;
  /** JSON `{"<namespace>":{"username":"...","password":"..."}}`, from UPSTREAM_CREDENTIALS. */
  credentialsJson?: string | undefined;
}

const DOCKER_HUB = 'docker.io';
const DOCKER_HUB_HOST = 'registry-1.docker.io';

const KNOWN_KEYS = new Set([
  'namespace',
  'host',
  'tls',
  'accept_invalid_certs',
  'user_agent',
  'username',
  'password',
  'credential_helper',
  'credential_ttl',
  'manifest_invalidation_time',
  'blob_invalidation_time',
  'ca_file',
  'client_cert_file',
  'client_key_file',
  'serve_stale',
  'connect_timeout',
  'read_timeout',
  'client_auth',
  'token_realm_hosts',
]);

const NAMESPACE = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]{1,5})?$|^\[[0-9a-fA-F:.]+\](?::[0-9]{1,5})?$/;

/** The `<name>` of a `docker-credential-<name>` program: no path separators, no leading dash. */
const CREDENTIAL_HELPER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function isValidNamespace(ns: string): boolean {
  return ns.length <= 255 && NAMESPACE.test(ns);
}

export function defaultUpstreamSettings(): MirrorConfig['defaults'] {
  return {
    tls: true,
    acceptInvalidCerts: false,
    userAgent: undefined,
    username: undefined,
    password: undefined,
    credentialHelper: undefined,
    credentialTtlMs: DEFAULT_CREDENTIAL_TTL_MS,
    manifestInvalidationMs: DEFAULT_INVALIDATION_MS,
    blobInvalidationMs: DEFAULT_INVALIDATION_MS,
    caFile: undefined,
    clientCertFile: undefined,
    clientKeyFile: undefined,
    serveStale: true,
    connectTimeoutMs: DEFAULT_CONNECT_TIMEOUT_MS,
    readTimeoutMs: DEFAULT_READ_TIMEOUT_MS,
    clientAuthFile: undefined,
    tokenRealmHosts: [],
  };
}

/** The implicit upstream for a namespace nobody configured: https://<namespace>, docker.io from registry-1. */
export function implicitUpstream(namespace: string, config: MirrorConfig): UpstreamConfig {
  return {
    ...config.defaults,
    namespace,
    host: namespace === DOCKER_HUB ? DOCKER_HUB_HOST : namespace,
    explicit: false,
  };
}

export function loadMirrorConfig(options: LoadOptions = {}): MirrorConfig {
  const defaults = defaultUpstreamSettings();
  const upstreams = new Map<string, UpstreamConfig>();
  // Every problem of the file, the credentials and the flags is reported at once.
  const problems: string[] = [];
  const file = options.configFile;
  if (file) {
    let text: string | undefined;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      problems.push(`${file}: cannot read upstream config: ${(e as Error).message}`);
    }
    const firstIndex = new Map<string, number>();
    const entries = text === undefined ? [] : (collecting(problems, () => parseUpstreamEntries(text, file, problems)) ?? []);
    entries.forEach((entry, index) => {
      const first = firstIndex.get(entry.namespace);
      if (first !== undefined) {
        problems.push(
          `${file}: entry ${index} (namespace ${entry.namespace}): key "namespace": ${JSON.stringify(entry.namespace)} is already configured by entry ${first}`,
        );
        return;
      }
      firstIndex.set(entry.namespace, index);
      upstreams.set(entry.namespace, entry);
    });
  }
  if (options.credentialsJson) collecting(problems, () => applyCredentials(upstreams, options.credentialsJson as string, defaults));

  const defaultNamespace = options.defaultNamespace ?? DOCKER_HUB;
  if (!isValidNamespace(defaultNamespace)) {
    problems.push(`--default-namespace: ${JSON.stringify(defaultNamespace)} is not a registry host name`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return {
    upstreams,
    configFile: file,
    defaultNamespace,
    allowUnlisted: options.allowUnlisted ?? !file,
    defaults,
  };
}

/** Parses and validates the YAML list; every message names the file, the entry and the key. */
export function parseUpstreamYaml(text: string, file: string): UpstreamConfig[] {
  const problems: string[] = [];
  const entries = parseUpstreamEntries(text, file, problems);
  if (problems.length > 0) throw new ConfigError(problems);
  return entries;
}

/** The valid entries; the problems of the others (every one, not just the first) go to `problems`. */
function parseUpstreamEntries(text: string, file: string, problems: string[]): UpstreamConfig[] {
  let doc: unknown;
  try {
    doc = yaml.load(text, { filename: file });
  } catch (e) {
    throw new ConfigError(`${file}: invalid YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  if (doc === undefined || doc === null) return [];
  if (!Array.isArray(doc)) {
    throw new ConfigError(`${file}: expected a YAML list of upstream entries (- namespace: ..., host: ...), got ${typeName(doc)}`);
  }
  return doc.flatMap((raw, index) => collecting(problems, () => [parseEntry(raw, index, file)]) ?? []);
}

function parseEntry(raw: unknown, index: number, file: string): UpstreamConfig {
  const where0 = `${file}: entry ${index}`;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError(`${where0}: expected a mapping with namespace and host, got ${typeName(raw)}`);
  }
  const obj = raw as Record<string, unknown>;
  // Every problem of the entry is collected; the entry throws them together at the end.
  const problems: string[] = [];
  const fail = (message: string): void => {
    problems.push(message);
  };
  const nsRaw = obj['namespace'];
  const where = typeof nsRaw === 'string' ? `${where0} (namespace ${nsRaw})` : where0;
  for (const key of Object.keys(obj)) {
    if (!KNOWN_KEYS.has(key)) fail(`${where}: unknown key ${JSON.stringify(key)}`);
  }
  const d = defaultUpstreamSettings();
  const str = (key: string, required: boolean): string | undefined => {
    const v = obj[key];
    if (v === undefined || v === null) {
      if (required) fail(`${where}: key "${key}" is required (a string)`);
      return undefined;
    }
    if (typeof v !== 'string' && typeof v !== 'number') {
      fail(`${where}: key "${key}" must be a string, got ${typeName(v)}`);
      return undefined;
    }
    return String(v);
  };
  const bool = (key: string, def: boolean): boolean => {
    const v = obj[key];
    if (v === undefined || v === null) return def;
    if (typeof v !== 'boolean') {
      fail(`${where}: key "${key}" must be true or false, got ${JSON.stringify(v)}`);
      return def;
    }
    return v;
  };
  const duration = (key: string, def: number): number => {
    const v = obj[key];
    if (v === undefined || v === null) return def;
    const ms = typeof v === 'string' ? parseDuration(v) : undefined;
    if (ms === undefined) {
      fail(`${where}: key "${key}" must be a duration like 0s, 90m, 12h or 14d, got ${JSON.stringify(v)}`);
      return def;
    }
    return ms;
  };

  const namespaceValue = str('namespace', true);
  const namespace = namespaceValue ?? '';
  if (namespaceValue !== undefined && !isValidNamespace(namespace)) {
    fail(`${where}: key "namespace" must be a registry host name like docker.io or registry.local:5000, got ${JSON.stringify(namespace)}`);
  }
  const hostValue = str('host', true);
  const host = hostValue ?? '';
  if (hostValue !== undefined && !isValidNamespace(host)) {
    fail(`${where}: key "host" must be a host name with an optional port (no scheme, no path), got ${JSON.stringify(host)}`);
  }
  const username = str('username', false);
  const password = str('password', false);
  if ((username === undefined) !== (password === undefined)) {
    fail(`${where}: keys "username" and "password" must be given together`);
  }
  const credentialHelper = str('credential_helper', false);
  if (credentialHelper !== undefined) {
    if (!CREDENTIAL_HELPER_NAME.test(credentialHelper)) {
      fail(`${where}: key "credential_helper" must be a helper name like ecr-login (runs docker-credential-<name>), got ${JSON.stringify(credentialHelper)}`);
    }
    if (username !== undefined) {
      fail(`${where}: keys "credential_helper" and "username"/"password" are exclusive: the helper supplies the credentials`);
    }
  }
  const tokenRealmHosts = collecting(problems, () => hostList('token_realm_hosts', obj['token_realm_hosts'], where)) ?? [];
  const clientCertFile = str('client_cert_file', false);
  const clientKeyFile = str('client_key_file', false);
  if ((clientCertFile === undefined) !== (clientKeyFile === undefined)) {
    fail(`${where}: keys "client_cert_file" and "client_key_file" must be given together`);
  }
  const caFile = str('ca_file', false);
  const clientAuthFile = str('client_auth', false);
  for (const [key, path] of [
    ['ca_file', caFile],
    ['client_cert_file', clientCertFile],
    ['client_key_file', clientKeyFile],
    ['client_auth', clientAuthFile],
  ] as const) {
    if (path === undefined) continue;
    try {
      readFileSync(path);
    } catch (e) {
      fail(`${where}: key "${key}": cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }
  const entry: UpstreamConfig = {
    namespace,
    host,
    tls: bool('tls', d.tls),
    acceptInvalidCerts: bool('accept_invalid_certs', d.acceptInvalidCerts),
    userAgent: str('user_agent', false),
    username,
    password,
    credentialHelper,
    credentialTtlMs: duration('credential_ttl', d.credentialTtlMs),
    manifestInvalidationMs: duration('manifest_invalidation_time', d.manifestInvalidationMs),
    blobInvalidationMs: duration('blob_invalidation_time', d.blobInvalidationMs),
    caFile,
    clientCertFile,
    clientKeyFile,
    serveStale: bool('serve_stale', d.serveStale),
    connectTimeoutMs: duration('connect_timeout', d.connectTimeoutMs),
    readTimeoutMs: duration('read_timeout', d.readTimeoutMs),
    clientAuthFile,
    tokenRealmHosts,
    explicit: true,
  };
  if (problems.length > 0) throw new ConfigError(problems);
  return entry;
}

/** A list of `host[:port]` (no scheme, no path), lower-cased; absent or null is the empty list. */
function hostList(key: string, v: unknown, where: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) {
    throw new ConfigError(`${where}: key "${key}" must be a list of host names like [auth.example.com], got ${typeName(v)}`);
  }
  return v.map((item: unknown, i) => {
    if (typeof item !== 'string' || !isValidNamespace(item)) {
      throw new ConfigError(`${where}: key "${key}" item ${i} must be a host name with an optional port (no scheme, no path), got ${JSON.stringify(item)}`);
    }
    return item.toLowerCase();
  });
}

/** UPSTREAM_CREDENTIALS overrides (or adds) credentials per namespace; unknown namespaces become explicit entries. */
function applyCredentials(upstreams: Map<string, UpstreamConfig>, json: string, defaults: MirrorConfig['defaults']): void {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (e) {
    // V8's message quotes the text around the mistake, and this text holds passwords: position only.
    const position = /at position (\d+)/.exec((e as Error).message)?.[1];
    throw new ConfigError(`UPSTREAM_CREDENTIALS: invalid JSON${position === undefined ? '' : ` at position ${position}`} (its text is not shown: it holds passwords)`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError('UPSTREAM_CREDENTIALS: expected an object {"<namespace>":{"username":"...","password":"..."}}');
  }
  const problems: string[] = [];
  for (const [namespace, cred] of Object.entries(parsed as Record<string, unknown>)) {
    const c = cred as Record<string, unknown> | null;
    if (typeof c !== 'object' || c === null || typeof c['username'] !== 'string' || typeof c['password'] !== 'string') {
      problems.push(`UPSTREAM_CREDENTIALS: namespace ${JSON.stringify(namespace)}: expected {"username":"...","password":"..."}`);
      continue;
    }
    if (!isValidNamespace(namespace)) {
      problems.push(`UPSTREAM_CREDENTIALS: ${JSON.stringify(namespace)} is not a registry host name`);
      continue;
    }
    const existing = upstreams.get(namespace);
    const base: UpstreamConfig = existing ?? {
      ...defaults,
      namespace,
      host: namespace === DOCKER_HUB ? DOCKER_HUB_HOST : namespace,
      explicit: false,
    };
    // Explicit credentials override a credential_helper of the same entry.
    upstreams.set(namespace, { ...base, username: c['username'], password: c['password'], credentialHelper: undefined });
  }
  if (problems.length > 0) throw new ConfigError(problems);
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  return typeof v === 'object' ? 'a mapping' : `${typeof v} ${JSON.stringify(v)}`;
}
