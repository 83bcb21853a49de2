import { readFileSync } from 'node:fs';
import type { Command, Option } from 'commander';
import yaml from 'js-yaml';
import { formatDuration } from '../../config/duration.js';
import type { MirrorConfig, UpstreamConfig } from '../../config/types.js';
import { ConfigError } from '../../config/upstreams.js';
import { resolveS3Options } from '../../storage/s3/options.js';
import { REDACTED, redactUrlCredentials } from '../redact.js';
import { serverSettings } from '../server-settings.js';
import type { AdminCommandRegistrar, AdminContext } from './index.js';
import { errorText } from '../../error-text.js';

/** Flags whose value is a secret, by name: today --secret-key; a future --*-password or --*-token too. */
const SECRET_FLAG = /secret|password|token/i;

/**
 * `oci-registry [global flags] filesystem --root DIR config`
 *
 * Prints the configuration a server started with the same flags and environment would run with, as
 * YAML, each value followed by a comment naming where it came from (`flag`, `env:NAME`, `file:PATH`,
 * `UPSTREAM_CREDENTIALS`, `default`); secrets print as <redacted>. It runs the server's own checks
 * (serverSettings) first, so an invalid configuration exits 2 with the server's message: a config
 * check for CI. It touches neither storage nor network.
 */
export const registerConfig: AdminCommandRegistrar = (storageCommand, context) => {
  storageCommand
    .command('config')
    .description(
      'print the effective configuration (flags, environment, upstream file, defaults) with secrets redacted, or exit 2 naming what is invalid',
    )
    .action(() => {
      const ctx = context();
      const settings = serverSettings({ ...ctx.global, storage: ctx.storage });
      if (ctx.storage.kind === 's3') {
        // The checks the S3 backend runs when it is created (it is not created here: no SDK, no network).
        try {
          resolveS3Options({ ...ctx.storage, endpoint: ctx.storage.endpoint ?? '' });
        } catch (e) {
          throw new ConfigError(errorText(e));
        }
      }
      process.stdout.write(renderConfig(storageCommand, ctx, settings.config));
    });
};

type Scalar = string | number | boolean | null | readonly string[];

interface Line {
  key: string;
  value: Scalar;
  source: string;
}

function renderConfig(storageCommand: Command, ctx: AdminContext, config: MirrorConfig): string {
  const program = storageCommand.parent;
  const out: string[] = [
    '# oci-registry effective configuration: secrets print as <redacted>; each comment names the source',
    '# (flag, env:NAME, file:PATH, UPSTREAM_CREDENTIALS, default).',
  ];
  const globalLines = program ? optionLines(program) : [];
  for (const line of globalLines) {
    // Effective values where the flag alone does not decide them.
    if (line.key === 'allow-unlisted-namespaces' && !config.configFile) {
      line.value = config.allowUnlisted;
      line.source = 'default (no upstream config file)';
    }
  }
  out.push('global:', ...globalLines.map((l) => emit(l, '  ')));
  out.push(
    'storage:',
    emit({ key: 'kind', value: ctx.storage.kind, source: 'command' }, '  '),
    ...optionLines(storageCommand).map((l) => emit(l, '  ')),
  );
  out.push(...upstreamLines(config));
  return `${out.join('\n')}\n`;
}

/** Every option of a command (but --help and --version): value as given (secrets redacted) and its source. */
function optionLines(command: Command): Line[] {
  const values = command.opts() as Record<string, unknown>;
  const lines: Line[] = [];
  for (const option of command.options as readonly Option[]) {
    const name = option.long?.replace(/^--/, '');
    if (!name || name === 'help' || name === 'version') continue;
    const attr = option.attributeName();
    const raw = values[attr];
    const value: Scalar =
      raw === undefined ? null : typeof raw === 'string' || typeof raw === 'number' || typeof raw === 'boolean' ? raw : String(raw);
    lines.push({
      key: name,
      value: SECRET_FLAG.test(name) && value !== null ? REDACTED : redactUrl(value),
      source: describeSource(command.getOptionValueSource(attr), option),
    });
  }
  return lines;
}

function describeSource(source: string | undefined, option: Option): string {
  switch (source) {
    case 'cli':
      return 'flag';
    case 'env':
      return `env:${option.envVar ?? '?'}`;
    case undefined:
      return 'default';
    default:
      return source;
  }
}

function redactUrl(value: Scalar): Scalar {
  return typeof value === 'string' ? redactUrlCredentials(value) : value;
}

interface UpstreamField {
  key: string;
  value: (u: UpstreamConfig) => Scalar;
  secret?: boolean;
}

const duration = (ms: number): string => formatDuration(ms);

/** The YAML keys of an upstream entry (example.yaml), in its order. */
const UPSTREAM_FIELDS: readonly UpstreamField[] = [
  { key: 'namespace', value: (u) => u.namespace },
  { key: 'host', value: (u) => u.host },
  { key: 'tls', value: (u) => u.tls },
  { key: 'accept_invalid_certs', value: (u) => u.acceptInvalidCerts },
  { key: 'ca_file', value: (u) => u.caFile ?? null },
  { key: 'client_cert_file', value: (u) => u.clientCertFile ?? null },
  { key: 'client_key_file', value: (u) => u.clientKeyFile ?? null },
  { key: 'user_agent', value: (u) => u.userAgent ?? null },
  { key: 'username', value: (u) => u.username ?? null },
  { key: 'password', value: (u) => u.password ?? null, secret: true },
  { key: 'token_realm_hosts', value: (u) => u.tokenRealmHosts },
  { key: 'credential_helper', value: (u) => u.credentialHelper ?? null },
  { key: 'credential_ttl', value: (u) => duration(u.credentialTtlMs) },
  { key: 'manifest_invalidation_time', value: (u) => duration(u.manifestInvalidationMs) },
  { key: 'blob_invalidation_time', value: (u) => duration(u.blobInvalidationMs) },
  { key: 'serve_stale', value: (u) => u.serveStale },
  { key: 'connect_timeout', value: (u) => duration(u.connectTimeoutMs) },
  { key: 'read_timeout', value: (u) => duration(u.readTimeoutMs) },
  // The path only: the htpasswd hashes inside are never read here.
  { key: 'client_auth', value: (u) => u.clientAuthFile ?? null },
];

const CREDENTIAL_KEYS = new Set(['username', 'password', 'credential_helper']);

function upstreamLines(config: MirrorConfig): string[] {
  if (config.upstreams.size === 0) return ['upstreams: []'];
  const file = config.configFile;
  const fileKeys = file ? keysInFile(file) : new Map<string, Set<string>>();
  const credentialNamespaces = credentialsNamespaces();
  const out = ['upstreams:'];
  for (const u of config.upstreams.values()) {
    const given = fileKeys.get(u.namespace);
    UPSTREAM_FIELDS.forEach((field, i) => {
      let source = 'default';
      if (credentialNamespaces.has(u.namespace) && (CREDENTIAL_KEYS.has(field.key) || (!given && field.key === 'namespace')))
        source = 'UPSTREAM_CREDENTIALS';
      else if (given && file && given.has(field.key)) source = `file:${file}`;
      const raw = field.value(u);
      const value = field.secret && raw !== null ? REDACTED : raw;
      out.push(emit({ key: field.key, value, source }, i === 0 ? '  - ' : '    '));
    });
  }
  return out;
}

/**
 * Which keys each entry of the (already validated) upstream file names, by namespace: only to tell
 * `file:` from `default`; the values printed are the loaded ones.
 */
function keysInFile(file: string): Map<string, Set<string>> {
  const keys = new Map<string, Set<string>>();
  const doc: unknown = yaml.load(readFileSync(file, 'utf8'));
  if (!Array.isArray(doc)) return keys;
  for (const entry of doc) {
    if (typeof entry === 'object' && entry !== null && !Array.isArray(entry)) {
      const obj = entry as Record<string, unknown>;
      keys.set(String(obj['namespace']), new Set(Object.keys(obj)));
    }
  }
  return keys;
}

function credentialsNamespaces(): Set<string> {
  const json = process.env['UPSTREAM_CREDENTIALS'];
  if (!json) return new Set();
  const parsed: unknown = JSON.parse(json);
  return new Set(typeof parsed === 'object' && parsed !== null ? Object.keys(parsed) : []);
}

function emit(line: Line, indent: string): string {
  const value = line.value === null ? 'null' : yaml.dump(line.value, { flowLevel: 0, lineWidth: -1 }).trimEnd();
  return `${indent}${line.key}: ${value}  # ${line.source}`;
}
