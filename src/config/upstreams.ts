import { readFileSync } from 'node:fs';
import yaml from 'js-yaml';
import { DOCKER_HUB, registryHostOf } from '../oci/docker-hub.js';
import { isValidNamespace } from '../oci/namespace.js';
import { parseDuration } from './duration.js';
import {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_CREDENTIAL_TTL_MS,
  DEFAULT_FAILOVER_BACKOFF_MS,
  DEFAULT_INVALIDATION_MS,
  DEFAULT_READ_TIMEOUT_MS,
  type FallbackHost,
  type MirrorConfig,
  type UpstreamConfig,
} from './types.js';
import { errorText } from '../error-text.js';

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
  'fallback_hosts',
  'failover_backoff',
]);

/** What a fallback_hosts item may set for its host; the rest (timeouts, cache times, client_auth) is the entry's. */
const FALLBACK_KEYS = new Set([
  'host',
  'tls',
  'accept_invalid_certs',
  'ca_file',
  'client_cert_file',
  'client_key_file',
  'username',
  'password',
  'credential_helper',
  'token_realm_hosts',
]);

/** The `<name>` of a `docker-credential-<name>` program: no path separators, no leading dash. */
const CREDENTIAL_HELPER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

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
    fallbackHosts: [],
    failoverBackoffMs: DEFAULT_FAILOVER_BACKOFF_MS,
  };
}

/** The implicit upstream for a namespace nobody configured: https://<namespace>, docker.io from registry-1. */
export function implicitUpstream(namespace: string, config: MirrorConfig): UpstreamConfig {
  return {
    ...config.defaults,
    namespace,
    host: registryHostOf(namespace),
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
      problems.push(`${file}: cannot read upstream config: ${errorText(e)}`);
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
    throw new ConfigError(`${file}: invalid YAML${yamlErrorText(e)}`);
  }
  if (doc === undefined || doc === null) return [];
  if (!Array.isArray(doc)) {
    throw new ConfigError(`${file}: expected a YAML list of upstream entries (- namespace: ..., host: ...), got ${typeName(doc)}`);
  }
  return doc.flatMap((raw, index) => collecting(problems, () => [parseEntry(raw, index, file)]) ?? []);
}

/**
 * js-yaml's reason and position without any of the file's text: its message quotes what it could not
 * read (`unidentified alias "Secr3t"` for `password: *Secr3t`) and a snippet of the lines around it.
 */
function yamlErrorText(e: unknown): string {
  const err = e as { reason?: unknown; mark?: { line?: unknown; column?: unknown } };
  const at =
    typeof err.mark?.line === 'number' && typeof err.mark.column === 'number'
      ? ` at line ${err.mark.line + 1}, column ${err.mark.column + 1}`
      : '';
  if (typeof err.reason !== 'string') return at;
  const reason = err.reason.replace(/"[^"]*"/g, '"…"').replace(/!<(?!tag:yaml\.org,)[^>]*>/g, '!<…>');
  const hint = /alias|tag/.test(reason) ? ' (quote values that begin with *, &, ! or another YAML indicator)' : '';
  return `${at}: ${reason}${hint}`;
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
      fail(
        `${where}: key "credential_helper" must be a helper name like ecr-login (runs docker-credential-<name>), got ${JSON.stringify(credentialHelper)}`,
      );
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
  collecting(problems, () =>
    checkReadable(where, [
      ['ca_file', caFile],
      ['client_cert_file', clientCertFile],
      ['client_key_file', clientKeyFile],
      ['client_auth', clientAuthFile],
    ]),
  );
  const fallbackHosts = collecting(problems, () => fallbackList(obj['fallback_hosts'], where, host)) ?? [];
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
    fallbackHosts,
    failoverBackoffMs: duration('failover_backoff', d.failoverBackoffMs),
    explicit: true,
  };
  if (problems.length > 0) throw new ConfigError(problems);
  return entry;
}

function checkReadable(where: string, files: readonly (readonly [string, string | undefined])[]): void {
  for (const [key, path] of files) {
    if (path === undefined) continue;
    try {
      readFileSync(path);
    } catch (e) {
      throw new ConfigError(`${where}: key "${key}": cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }
}

/** `fallback_hosts`: a list of `host[:port]` strings or mappings overriding a subset of the entry's keys for that host. */
function fallbackList(v: unknown, where: string, primary: string): FallbackHost[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) {
    throw new ConfigError(
      `${where}: key "fallback_hosts" must be a list of hosts like [mirror.example.com] or of mappings {host: ...}, got ${typeName(v)}`,
    );
  }
  const seen = new Set([primary.toLowerCase()]);
  return v.map((item: unknown, i) => {
    const at = `${where}: key "fallback_hosts" item ${i}`;
    const fallback = fallbackItem(item, at);
    const key = fallback.host.toLowerCase();
    if (seen.has(key))
      throw new ConfigError(`${at}: host ${JSON.stringify(fallback.host)} is already the entry's host or an earlier fallback`);
    seen.add(key);
    return fallback;
  });
}

function fallbackItem(item: unknown, at: string): FallbackHost {
  const badHost = (got: unknown): ConfigError =>
    new ConfigError(
      `${at}: expected a host name with an optional port (no scheme, no path) or a mapping {host: ...}, got ${typeof got === 'object' ? typeName(got) : JSON.stringify(got)}`,
    );
  if (typeof item === 'string') {
    if (!isValidNamespace(item)) throw badHost(item);
    return { host: item };
  }
  if (typeof item !== 'object' || item === null || Array.isArray(item)) throw badHost(item);
  const obj = item as Record<string, unknown>;
  for (const key of Object.keys(obj)) {
    if (!FALLBACK_KEYS.has(key)) {
      throw new ConfigError(
        `${at}: unknown key ${JSON.stringify(key)} (a fallback host may set ${[...FALLBACK_KEYS].join(', ')}; the rest is the entry's)`,
      );
    }
  }
  const str = (key: string): string | undefined => {
    const value = obj[key];
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'string' && typeof value !== 'number')
      throw new ConfigError(`${at}: key "${key}" must be a string, got ${typeName(value)}`);
    return String(value);
  };
  const bool = (key: string): boolean | undefined => {
    const value = obj[key];
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'boolean') throw new ConfigError(`${at}: key "${key}" must be true or false, got ${JSON.stringify(value)}`);
    return value;
  };
  const host = str('host');
  if (host === undefined) throw new ConfigError(`${at}: key "host" is required (a host name with an optional port)`);
  if (!isValidNamespace(host))
    throw new ConfigError(`${at}: key "host" must be a host name with an optional port (no scheme, no path), got ${JSON.stringify(host)}`);
  const username = str('username');
  const password = str('password');
  if ((username === undefined) !== (password === undefined))
    throw new ConfigError(`${at}: keys "username" and "password" must be given together`);
  const credentialHelper = str('credential_helper');
  if (credentialHelper !== undefined) {
    if (!CREDENTIAL_HELPER_NAME.test(credentialHelper)) {
      throw new ConfigError(
        `${at}: key "credential_helper" must be a helper name like ecr-login (runs docker-credential-<name>), got ${JSON.stringify(credentialHelper)}`,
      );
    }
    if (username !== undefined)
      throw new ConfigError(`${at}: keys "credential_helper" and "username"/"password" are exclusive: the helper supplies the credentials`);
  }
  const clientCertFile = str('client_cert_file');
  const clientKeyFile = str('client_key_file');
  if ((clientCertFile === undefined) !== (clientKeyFile === undefined)) {
    throw new ConfigError(`${at}: keys "client_cert_file" and "client_key_file" must be given together`);
  }
  const caFile = str('ca_file');
  checkReadable(at, [
    ['ca_file', caFile],
    ['client_cert_file', clientCertFile],
    ['client_key_file', clientKeyFile],
  ]);
  const credentials =
    username !== undefined && password !== undefined
      ? { username, password }
      : credentialHelper !== undefined
        ? { credentialHelper }
        : undefined;
  return {
    host,
    tls: bool('tls'),
    acceptInvalidCerts: bool('accept_invalid_certs'),
    caFile,
    clientCertFile,
    clientKeyFile,
    credentials,
    tokenRealmHosts:
      obj['token_realm_hosts'] === undefined || obj['token_realm_hosts'] === null
        ? undefined
        : hostList('token_realm_hosts', obj['token_realm_hosts'], at),
  };
}

/**
 * The settings used to talk to one fallback host: the entry's, with what the item overrides. Credentials
 * are the item's own when it has any (the entry's are never sent there), else the entry's. Computed when
 * the client is built, so UPSTREAM_CREDENTIALS (applied after parsing) reaches hosts that inherit.
 */
export function fallbackConfig(primary: UpstreamConfig, fallback: FallbackHost): UpstreamConfig {
  const own = fallback.credentials;
  const credentials =
    own === undefined
      ? { username: primary.username, password: primary.password, credentialHelper: primary.credentialHelper }
      : 'credentialHelper' in own
        ? { username: undefined, password: undefined, credentialHelper: own.credentialHelper }
        : { username: own.username, password: own.password, credentialHelper: undefined };
  // A CA or client certificate given for this host replaces the entry's (a different PKI), never mixes with it.
  const ownCerts = fallback.clientCertFile !== undefined;
  return {
    ...primary,
    ...credentials,
    host: fallback.host,
    tls: fallback.tls ?? primary.tls,
    acceptInvalidCerts: fallback.acceptInvalidCerts ?? primary.acceptInvalidCerts,
    caFile: fallback.caFile ?? primary.caFile,
    clientCertFile: ownCerts ? fallback.clientCertFile : primary.clientCertFile,
    clientKeyFile: ownCerts ? fallback.clientKeyFile : primary.clientKeyFile,
    tokenRealmHosts: fallback.tokenRealmHosts ?? primary.tokenRealmHosts,
    fallbackHosts: [],
  };
}

/** A list of `host[:port]` (no scheme, no path), lower-cased; absent or null is the empty list. */
function hostList(key: string, v: unknown, where: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) {
    throw new ConfigError(`${where}: key "${key}" must be a list of host names like [auth.example.com], got ${typeName(v)}`);
  }
  return v.map((item: unknown, i) => {
    if (typeof item !== 'string' || !isValidNamespace(item)) {
      throw new ConfigError(
        `${where}: key "${key}" item ${i} must be a host name with an optional port (no scheme, no path), got ${JSON.stringify(item)}`,
      );
    }
    return item.toLowerCase();
  });
}

/** UPSTREAM_CREDENTIALS overrides (or adds) credentials per namespace; unknown namespaces become explicit entries. */

const CREDENTIALS_SHAPE = '{"<namespace>":{"username":"...","password":"..."}}';

/**
 * UPSTREAM_CREDENTIALS overrides (or adds) credentials per namespace; unknown namespaces become explicit
 * entries. Its text holds passwords, so no message quotes it: JSON.parse's own message can carry a piece
 * of the input (`Unexpected token 'Z', ..."password":Zq9-SECRET"...`), and a key that is not a host name
 * may be a password in the wrong place; only positions and entry numbers are named.
 */
function applyCredentials(upstreams: Map<string, UpstreamConfig>, json: string, defaults: MirrorConfig['defaults']): void {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (e) {
    const position = /\bposition (\d+)/.exec((e as Error).message)?.[1];
    // V8's message quotes the text around the mistake, and this text holds passwords: position only.
    throw new ConfigError(
      `UPSTREAM_CREDENTIALS: invalid JSON${position ? ` at character ${position}` : ''}: expected ${CREDENTIALS_SHAPE}`,
    );
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError(`UPSTREAM_CREDENTIALS: expected an object ${CREDENTIALS_SHAPE}`);
  }
  let index = 0;
  const problems: string[] = [];
  for (const [namespace, cred] of Object.entries(parsed as Record<string, unknown>)) {
    const where = isValidNamespace(namespace) ? `namespace ${JSON.stringify(namespace)}` : `entry ${index}`;
    index++;
    const c = cred as Record<string, unknown> | null;
    if (typeof c !== 'object' || c === null || typeof c['username'] !== 'string' || typeof c['password'] !== 'string') {
      problems.push(`UPSTREAM_CREDENTIALS: ${where}: expected {"username":"...","password":"..."} (two strings)`);
      continue;
    }
    if (!isValidNamespace(namespace)) {
      problems.push(`UPSTREAM_CREDENTIALS: ${where}: the key is not a registry host name like docker.io or registry.local:5000`);
      continue;
    }
    const existing = upstreams.get(namespace);
    const base: UpstreamConfig = existing ?? {
      ...defaults,
      namespace,
      host: registryHostOf(namespace),
      explicit: false,
    };
    // Explicit credentials override a credential_helper of the same entry.
    upstreams.set(namespace, { ...base, username: c['username'], password: c['password'], credentialHelper: undefined });
  }
  if (problems.length > 0) throw new ConfigError(problems);
}

/** What a wrong value is, never the value itself: a misplaced password must not reach an error message. */
function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'boolean') return `boolean ${v}`;
  return `a ${typeof v}`;
}
