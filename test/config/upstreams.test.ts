import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ConfigError,
  defaultUpstreamSettings,
  fallbackConfig,
  implicitUpstream,
  loadMirrorConfig,
  parseUpstreamYaml,
} from '../../src/config/upstreams.js';
import {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_FAILOVER_BACKOFF_MS,
  DEFAULT_INVALIDATION_MS,
  DEFAULT_READ_TIMEOUT_MS,
  type UpstreamConfig,
} from '../../src/config/types.js';

const FILE = '/etc/oci-registry/upstreams.yaml';

async function tempDir(t: { teardown(fn: () => unknown): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'oci-config-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** The ConfigError message thrown by parsing `yaml`. */
function errorOf(yaml: string): string {
  try {
    parseUpstreamYaml(yaml, FILE);
  } catch (e) {
    if (e instanceof ConfigError) return e.message;
    throw e;
  }
  throw new Error('expected a ConfigError');
}

t.test('a minimal entry gets every default of the Rust oci-registry', async (t) => {
  const [u] = parseUpstreamYaml('- namespace: docker.io\n  host: registry-1.docker.io\n', FILE);
  t.match(u, {
    namespace: 'docker.io',
    host: 'registry-1.docker.io',
    tls: true,
    acceptInvalidCerts: false,
    manifestInvalidationMs: 14 * 86_400_000,
    blobInvalidationMs: 14 * 86_400_000,
    serveStale: true,
    connectTimeoutMs: DEFAULT_CONNECT_TIMEOUT_MS,
    readTimeoutMs: DEFAULT_READ_TIMEOUT_MS,
    explicit: true,
  });
  for (const key of ['userAgent', 'username', 'password', 'caFile', 'clientCertFile', 'clientKeyFile'] as const) {
    t.equal(u?.[key], undefined, `${key} is unset`);
  }
  t.equal(DEFAULT_INVALIDATION_MS, 14 * 86_400_000);
});

t.test('every key is read from its snake_case YAML name', async (t) => {
  const dir = await tempDir(t);
  const ca = join(dir, 'ca.pem');
  await writeFile(ca, '-----BEGIN CERTIFICATE-----\n');
  const yaml = [
    '- namespace: registry.local:5000',
    '  host: 10.0.0.5:5000',
    '  tls: false',
    '  accept_invalid_certs: true',
    '  user_agent: my-mirror/1.0',
    '  username: bob',
    '  password: secret',
    '  manifest_invalidation_time: 0s',
    '  blob_invalidation_time: 90m',
    `  ca_file: ${ca}`,
    '  serve_stale: false',
    '  connect_timeout: 5s',
    '  read_timeout: 2m',
  ].join('\n');
  const [u] = parseUpstreamYaml(yaml, FILE);
  t.match(u, {
    namespace: 'registry.local:5000',
    host: '10.0.0.5:5000',
    tls: false,
    acceptInvalidCerts: true,
    userAgent: 'my-mirror/1.0',
    username: 'bob',
    password: 'secret',
    manifestInvalidationMs: 0,
    blobInvalidationMs: 90 * 60_000,
    caFile: ca,
    serveStale: false,
    connectTimeoutMs: 5000,
    readTimeoutMs: 120_000,
    explicit: true,
  });
});

t.test('an empty file is an empty list of upstreams', async (t) => {
  t.same(parseUpstreamYaml('', FILE), []);
  t.same(parseUpstreamYaml('# only a comment\n', FILE), []);
});

t.test('a document that is not a list is refused, naming the file', async (t) => {
  const msg = errorOf('namespace: docker.io\nhost: x\n');
  t.match(msg, FILE);
  t.match(msg, /list/);
});

t.test('invalid YAML is refused, naming the file', async (t) => {
  const msg = errorOf('- namespace: [docker.io\n');
  t.match(msg, FILE);
  t.match(msg, /invalid YAML/);
});

t.test('an entry that is not a mapping is refused, naming the file and the entry index', async (t) => {
  const msg = errorOf('- namespace: a.io\n  host: a.io\n- just a string\n');
  t.match(msg, FILE);
  t.match(msg, 'entry 1');
});

t.test('an unknown key is refused, naming the file, the entry index, its namespace and the key', async (t) => {
  const msg = errorOf('- namespace: a.io\n  host: a.io\n- namespace: ghcr.io\n  host: ghcr.io\n  manifest_invalidation: 1h\n');
  t.match(msg, FILE);
  t.match(msg, 'entry 1');
  t.match(msg, 'ghcr.io');
  t.match(msg, '"manifest_invalidation"');
});

t.test('a missing host is refused, naming the file, the entry and the key', async (t) => {
  const msg = errorOf('- namespace: quay.io\n');
  t.match(msg, FILE);
  t.match(msg, 'entry 0');
  t.match(msg, 'quay.io');
  t.match(msg, '"host"');
  t.match(msg, /required/);
});

t.test('a missing namespace is refused, naming the file, the entry and the key', async (t) => {
  const msg = errorOf('- host: quay.io\n');
  t.match(msg, FILE);
  t.match(msg, 'entry 0');
  t.match(msg, '"namespace"');
});

t.test('a bad duration is refused, naming the file, the entry, the key and the value', async (t) => {
  const msg = errorOf('- namespace: docker.io\n  host: registry-1.docker.io\n  manifest_invalidation_time: 14 days\n');
  t.match(msg, FILE);
  t.match(msg, 'entry 0');
  t.match(msg, 'docker.io');
  t.match(msg, '"manifest_invalidation_time"');
  t.match(msg, '14 days');
});

t.test('a duration given as a bare number is refused', async (t) => {
  const msg = errorOf('- namespace: docker.io\n  host: registry-1.docker.io\n  blob_invalidation_time: 3600\n');
  t.match(msg, '"blob_invalidation_time"');
});

t.test('a non-boolean tls is refused, naming the key', async (t) => {
  const msg = errorOf('- namespace: docker.io\n  host: registry-1.docker.io\n  tls: "yes please"\n');
  t.match(msg, FILE);
  t.match(msg, '"tls"');
});

t.test('a host with a scheme or a path is refused, naming the key', async (t) => {
  t.match(errorOf('- namespace: docker.io\n  host: https://registry-1.docker.io\n'), '"host"');
  t.match(errorOf('- namespace: docker.io\n  host: registry-1.docker.io/v2\n'), '"host"');
});

t.test('a namespace that is not a host name is refused, naming the key', async (t) => {
  const msg = errorOf('- namespace: "docker io"\n  host: registry-1.docker.io\n');
  t.match(msg, FILE);
  t.match(msg, '"namespace"');
});

t.test('username without password is refused, naming both keys', async (t) => {
  const msg = errorOf('- namespace: ghcr.io\n  host: ghcr.io\n  username: bob\n');
  t.match(msg, FILE);
  t.match(msg, 'ghcr.io');
  t.match(msg, '"username"');
  t.match(msg, '"password"');
});

t.test('a ca_file that cannot be read is refused, naming the file, the entry, the key and the path', async (t) => {
  const dir = await tempDir(t);
  const missing = join(dir, 'nope.pem');
  const msg = errorOf(`- namespace: ghcr.io\n  host: ghcr.io\n  ca_file: ${missing}\n`);
  t.match(msg, FILE);
  t.match(msg, 'entry 0');
  t.match(msg, 'ghcr.io');
  t.match(msg, '"ca_file"');
  t.match(msg, missing);
  t.match(msg, 'ENOENT');
});

t.test('client_cert_file without client_key_file is refused', async (t) => {
  const msg = errorOf('- namespace: ghcr.io\n  host: ghcr.io\n  client_cert_file: /x.pem\n');
  t.match(msg, '"client_cert_file"');
  t.match(msg, '"client_key_file"');
});

t.test('loadMirrorConfig reads the file and indexes the upstreams by namespace', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'upstreams.yaml');
  await writeFile(file, '- namespace: docker.io\n  host: registry-1.docker.io\n- namespace: ghcr.io\n  host: ghcr.io\n');
  const config = loadMirrorConfig({ configFile: file });
  t.same([...config.upstreams.keys()], ['docker.io', 'ghcr.io']);
  t.equal(config.configFile, file);
  t.equal(config.defaultNamespace, 'docker.io');
  t.equal(config.allowUnlisted, false, 'a config file means only listed namespaces are mirrored');
});

t.test('without a config file every public namespace may be mirrored', async (t) => {
  const config = loadMirrorConfig();
  t.equal(config.upstreams.size, 0);
  t.equal(config.allowUnlisted, true);
  t.equal(config.configFile, undefined);
  t.same(config.defaults, defaultUpstreamSettings());
});

t.test('allowUnlisted may be set explicitly with a config file', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'upstreams.yaml');
  await writeFile(file, '');
  t.equal(loadMirrorConfig({ configFile: file, allowUnlisted: true }).allowUnlisted, true);
});

t.test('a config file that cannot be read is refused, naming the file', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'missing.yaml');
  t.throws(() => loadMirrorConfig({ configFile: file }), {
    name: 'ConfigError',
    message: new RegExp(file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')),
  });
});

t.test('a namespace configured twice is refused, naming the file and the namespace', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'upstreams.yaml');
  await writeFile(file, '- namespace: ghcr.io\n  host: ghcr.io\n- namespace: ghcr.io\n  host: mirror.ghcr.io\n');
  try {
    loadMirrorConfig({ configFile: file });
    t.fail('should throw');
  } catch (e) {
    t.ok(e instanceof ConfigError);
    const msg = (e as Error).message;
    t.match(msg, file);
    t.match(msg, 'ghcr.io');
    t.match(msg, 'entry 1');
    t.match(msg, '"namespace"');
  }
});

t.test('UPSTREAM_CREDENTIALS overrides the credentials of a configured namespace and keeps its other settings', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'upstreams.yaml');
  await writeFile(file, '- namespace: ghcr.io\n  host: ghcr.example\n  username: old\n  password: old\n  manifest_invalidation_time: 1h\n');
  const config = loadMirrorConfig({
    configFile: file,
    credentialsJson: JSON.stringify({ 'ghcr.io': { username: 'robot', password: 's3cret' } }),
  });
  t.match(config.upstreams.get('ghcr.io'), {
    host: 'ghcr.example',
    username: 'robot',
    password: 's3cret',
    manifestInvalidationMs: 3_600_000,
    explicit: true,
  });
});

t.test('UPSTREAM_CREDENTIALS for an unconfigured namespace adds it with defaults (docker.io from registry-1)', async (t) => {
  const config = loadMirrorConfig({ credentialsJson: JSON.stringify({ 'docker.io': { username: 'u', password: 'p' } }) });
  t.match(config.upstreams.get('docker.io'), { host: 'registry-1.docker.io', tls: true, username: 'u', password: 'p' });
});

t.test('invalid UPSTREAM_CREDENTIALS are refused, naming the variable, never echoing a password', async (t) => {
  t.throws(() => loadMirrorConfig({ credentialsJson: '{not json' }), { name: 'ConfigError', message: /UPSTREAM_CREDENTIALS/ });
  t.throws(() => loadMirrorConfig({ credentialsJson: '[]' }), { message: /UPSTREAM_CREDENTIALS/ });
  try {
    loadMirrorConfig({ credentialsJson: JSON.stringify({ 'ghcr.io': { username: 'u', password: 42 } }) });
    t.fail('should throw');
  } catch (e) {
    t.match((e as Error).message, /UPSTREAM_CREDENTIALS/);
    t.match((e as Error).message, 'ghcr.io');
  }
  try {
    loadMirrorConfig({ credentialsJson: JSON.stringify({ 'not a host': { username: 'u', password: 'hunter2' } }) });
    t.fail('should throw');
  } catch (e) {
    t.match((e as Error).message, /UPSTREAM_CREDENTIALS/);
    t.notMatch((e as Error).message, 'hunter2');
  }
});

/** The 4+ character pieces of `secret` found in `text` (none, when nothing of it leaked). */
function leakedFragments(text: string, secret: string): string[] {
  const found: string[] = [];
  for (let i = 0; i + 4 <= secret.length; i++) {
    const piece = secret.slice(i, i + 4);
    if (text.includes(piece)) found.push(piece);
  }
  return found;
}

const PASSWORD = 'Zq9-Wk7pX2-vR';

t.test('a malformed UPSTREAM_CREDENTIALS never quotes any part of a password in its error', async (t) => {
  const cases: Record<string, string> = {
    truncated: `{"docker.io":{"username":"u","password":"${PASSWORD}"`,
    'unquoted password': `{"docker.io":{"username":"u","password":${PASSWORD}}}`,
    'single quotes': `{'docker.io':{'username':'u','password':'${PASSWORD}'}}`,
    'trailing comma': `{"docker.io":{"username":"u","password":"${PASSWORD}",}}`,
    'shell-mangled quotes': `{docker.io:{username:u,password:${PASSWORD}}}`,
    'password only, no object': `"${PASSWORD}"`,
    'user:password string as the entry': `{"docker.io":"u:${PASSWORD}"}`,
    'password as a number-like key': `{"docker.io":{"username":"u"},"${PASSWORD}":{"username":"u","password":"x"}}`,
    'password in the key, as a host': `{"u:${PASSWORD}@docker.io":{"username":"u","password":"${PASSWORD}"}}`,
    'password of the wrong type': `{"docker.io":{"username":"u","password":["${PASSWORD}"]}}`,
    'a list': `[{"docker.io":{"username":"u","password":"${PASSWORD}"}}]`,
  };
  for (const [name, json] of Object.entries(cases)) {
    let message = '';
    try {
      loadMirrorConfig({ credentialsJson: json });
      t.fail(`${name}: should be refused`);
    } catch (e) {
      t.ok(e instanceof ConfigError, `${name}: a ConfigError`);
      message = (e as Error).message;
    }
    t.match(message, /^UPSTREAM_CREDENTIALS: /, `${name}: names the variable`);
    t.same(leakedFragments(message, PASSWORD), [], `${name}: ${message}`);
  }
});

t.test('a YAML error in the upstream config never quotes the password line', async (t) => {
  const entry = (password: string) => `- namespace: docker.io\n  host: registry-1.docker.io\n  username: u\n  password: ${password}\n`;
  for (const password of [
    `*${PASSWORD}`,
    `!${PASSWORD}`,
    `"${PASSWORD}`,
    `[${PASSWORD}`,
    `@${PASSWORD}`,
    `|${PASSWORD}`,
    `!!int ${PASSWORD}`,
  ]) {
    const message = errorOf(entry(password));
    t.match(message, new RegExp(`^${FILE}: invalid YAML at line \\d+, column \\d+`), `${password}: names the file and the position`);
    t.same(leakedFragments(message, PASSWORD), [], `${password}: ${message}`);
  }
  t.match(errorOf(entry(`*${PASSWORD}`)), /quote values/, 'an alias-looking password gets a hint');
});

t.test('a password or a whole entry of the wrong type is described, not quoted', async (t) => {
  for (const yaml of [
    `- namespace: docker.io\n  host: registry-1.docker.io\n  username: u\n  password: [${PASSWORD}]\n`,
    `- namespace: docker.io\n  host: registry-1.docker.io\n  username: u\n  password: {${PASSWORD}: 1}\n`,
    `- ${PASSWORD}\n`,
    `${PASSWORD}\n`,
  ]) {
    const message = errorOf(yaml);
    t.match(message, new RegExp(`^${FILE}`));
    t.same(leakedFragments(message, PASSWORD), [], message);
  }
});

t.test('a default namespace that is not a host name is refused', async (t) => {
  t.throws(() => loadMirrorConfig({ defaultNamespace: 'not a host' }), { name: 'ConfigError', message: /default-namespace/ });
  t.equal(loadMirrorConfig({ defaultNamespace: 'ghcr.io' }).defaultNamespace, 'ghcr.io');
});

t.test('an implicit upstream is https://<namespace> with the defaults, docker.io from registry-1.docker.io, not explicit', async (t) => {
  const config = loadMirrorConfig();
  t.match(implicitUpstream('ghcr.io', config), { namespace: 'ghcr.io', host: 'ghcr.io', tls: true, explicit: false });
  t.match(implicitUpstream('docker.io', config), { namespace: 'docker.io', host: 'registry-1.docker.io', explicit: false });
});

t.test('token_realm_hosts is a list of host names with optional ports, lower-cased; default empty', async (t) => {
  const [u] = parseUpstreamYaml(
    '- namespace: registry.gitlab.com\n  host: registry.gitlab.com\n  token_realm_hosts: [GitLab.com, "auth.example:8443"]\n',
    FILE,
  );
  t.same(u?.tokenRealmHosts, ['gitlab.com', 'auth.example:8443']);
  const [plain] = parseUpstreamYaml('- namespace: ghcr.io\n  host: ghcr.io\n', FILE);
  t.same(plain?.tokenRealmHosts, []);
  t.same(implicitUpstream('docker.io', loadMirrorConfig()).tokenRealmHosts, [], 'Docker Hub needs no entry: its realm is built in');
});

t.test('a token_realm_hosts that is not a list is refused, naming the file, the entry and the key', async (t) => {
  const msg = errorOf('- namespace: ghcr.io\n  host: ghcr.io\n  token_realm_hosts: gitlab.com\n');
  t.match(msg, FILE);
  t.match(msg, 'entry 0 (namespace ghcr.io)');
  t.match(msg, 'key "token_realm_hosts" must be a list of host names');
});

t.test('a token_realm_hosts item with a scheme, a path or not a string is refused, naming the item and the value', async (t) => {
  for (const [item, shown] of [
    ['https://gitlab.com', '"https://gitlab.com"'],
    ['gitlab.com/jwt/auth', '"gitlab.com/jwt/auth"'],
    ['42', '42'],
    ['{host: x}', '{"host":"x"}'],
  ] as const) {
    const msg = errorOf(
      `- namespace: ghcr.io\n  host: ghcr.io\n  token_realm_hosts: [auth.example, ${item.includes(':') && !item.startsWith('{') ? `"${item}"` : item}]\n`,
    );
    t.match(msg, `${FILE}: entry 0 (namespace ghcr.io): key "token_realm_hosts" item 1 must be a host name`, item);
    t.match(msg, shown, `${item}: the value is shown`);
  }
});

const ENTRY = '- namespace: registry.example\n  host: primary.example\n';

t.test('fallback_hosts: host strings and mappings, in order; default none, 30 s back-off', async (t) => {
  const dir = await tempDir(t);
  const ca = join(dir, 'other-ca.pem');
  await writeFile(ca, '-----BEGIN CERTIFICATE-----\n');
  const yaml = `${ENTRY}  failover_backoff: 10s\n  fallback_hosts:\n    - mirror-a.example:5000\n    - host: mirror-b.example\n      tls: false\n      ca_file: ${ca}\n      username: bob\n      password: b-secret\n      token_realm_hosts: [auth.mirror-b.example]\n    - host: mirror-c.example\n      credential_helper: ecr-login\n`;
  const [u] = parseUpstreamYaml(yaml, FILE);
  t.same(u?.fallbackHosts, [
    { host: 'mirror-a.example:5000' },
    {
      host: 'mirror-b.example',
      tls: false,
      acceptInvalidCerts: undefined,
      caFile: ca,
      clientCertFile: undefined,
      clientKeyFile: undefined,
      credentials: { username: 'bob', password: 'b-secret' },
      tokenRealmHosts: ['auth.mirror-b.example'],
    },
    {
      host: 'mirror-c.example',
      tls: undefined,
      acceptInvalidCerts: undefined,
      caFile: undefined,
      clientCertFile: undefined,
      clientKeyFile: undefined,
      credentials: { credentialHelper: 'ecr-login' },
      tokenRealmHosts: undefined,
    },
  ]);
  t.equal(u?.failoverBackoffMs, 10_000);
  const [plain] = parseUpstreamYaml(ENTRY, FILE);
  t.same(plain?.fallbackHosts, []);
  t.equal(plain?.failoverBackoffMs, DEFAULT_FAILOVER_BACKOFF_MS);
  t.equal(DEFAULT_FAILOVER_BACKOFF_MS, 30_000);
});

t.test("a fallback host inherits what it does not set; its own credentials replace the entry's entirely", async (t) => {
  const yaml = `${ENTRY}  username: alice\n  password: a-secret\n  token_realm_hosts: [auth.primary.example]\n  fallback_hosts:\n    - mirror-a.example\n    - host: mirror-b.example\n      username: bob\n      password: b-secret\n    - host: mirror-c.example\n      credential_helper: ecr-login\n`;
  const [u] = parseUpstreamYaml(yaml, FILE);
  const primary = u as UpstreamConfig;
  const [a, b, c] = primary.fallbackHosts.map((f) => fallbackConfig(primary, f));
  t.match(a, {
    namespace: 'registry.example',
    host: 'mirror-a.example',
    tls: true,
    username: 'alice',
    password: 'a-secret',
    tokenRealmHosts: ['auth.primary.example'],
    fallbackHosts: [],
  });
  t.match(b, { host: 'mirror-b.example', username: 'bob', password: 'b-secret', credentialHelper: undefined });
  t.match(c, { host: 'mirror-c.example', username: undefined, password: undefined, credentialHelper: 'ecr-login' });
});

t.test("UPSTREAM_CREDENTIALS reach fallback hosts that inherit the entry's credentials, not those with their own", async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'upstreams.yaml');
  await writeFile(file, `${ENTRY}  fallback_hosts:\n    - mirror-a.example\n    - {host: mirror-b.example, username: bob, password: b}\n`);
  const config = loadMirrorConfig({ configFile: file, credentialsJson: '{"registry.example":{"username":"env","password":"e"}}' });
  const primary = config.upstreams.get('registry.example') as UpstreamConfig;
  const [a, b] = primary.fallbackHosts.map((f) => fallbackConfig(primary, f));
  t.match(a, { username: 'env', password: 'e' });
  t.match(b, { username: 'bob', password: 'b' });
});

t.test('fallback_hosts errors name the file, the entry, the key, the item and what was expected', async (t) => {
  const cases: [string, string][] = [
    [
      '  fallback_hosts: mirror.example\n',
      'key "fallback_hosts" must be a list of hosts like [mirror.example.com] or of mappings {host: ...}, got a string',
    ],
    [
      '  fallback_hosts: ["https://mirror.example"]\n',
      'key "fallback_hosts" item 0: expected a host name with an optional port (no scheme, no path) or a mapping {host: ...}, got "https://mirror.example"',
    ],
    ['  fallback_hosts: [ok.example, 42]\n', 'key "fallback_hosts" item 1: expected a host name'],
    [
      '  fallback_hosts: [[a]]\n',
      'key "fallback_hosts" item 0: expected a host name with an optional port (no scheme, no path) or a mapping {host: ...}, got a list',
    ],
    ['  fallback_hosts: [{tls: false}]\n', 'key "fallback_hosts" item 0: key "host" is required'],
    [
      '  fallback_hosts: [{host: "a.example/x"}]\n',
      'key "fallback_hosts" item 0: key "host" must be a host name with an optional port (no scheme, no path), got "a.example/x"',
    ],
    [
      '  fallback_hosts: [{host: a.example, read_timeout: 1s}]\n',
      'key "fallback_hosts" item 0: unknown key "read_timeout" (a fallback host may set host, tls,',
    ],
    ['  fallback_hosts: [{host: a.example, tls: "no"}]\n', 'key "fallback_hosts" item 0: key "tls" must be true or false, got "no"'],
    [
      '  fallback_hosts: [{host: a.example, username: bob}]\n',
      'key "fallback_hosts" item 0: keys "username" and "password" must be given together',
    ],
    [
      '  fallback_hosts: [{host: a.example, username: bob, password: b, credential_helper: ecr-login}]\n',
      'key "fallback_hosts" item 0: keys "credential_helper" and "username"/"password" are exclusive',
    ],
    [
      '  fallback_hosts: [{host: a.example, credential_helper: ../evil}]\n',
      'key "fallback_hosts" item 0: key "credential_helper" must be a helper name',
    ],
    [
      '  fallback_hosts: [{host: a.example, client_cert_file: /x}]\n',
      'key "fallback_hosts" item 0: keys "client_cert_file" and "client_key_file" must be given together',
    ],
    [
      '  fallback_hosts: [{host: a.example, ca_file: /nonexistent/ca.pem}]\n',
      'key "fallback_hosts" item 0: key "ca_file": cannot read /nonexistent/ca.pem: ENOENT',
    ],
    [
      '  fallback_hosts: [{host: a.example, token_realm_hosts: ["https://x"]}]\n',
      'key "fallback_hosts" item 0: key "token_realm_hosts" item 0 must be a host name',
    ],
    [
      '  fallback_hosts: [a.example, A.example]\n',
      'key "fallback_hosts" item 1: host "A.example" is already the entry\'s host or an earlier fallback',
    ],
    ['  fallback_hosts: [primary.example]\n', 'key "fallback_hosts" item 0: host "primary.example" is already the entry\'s host'],
    ['  failover_backoff: 30\n', 'key "failover_backoff" must be a duration'],
  ];
  for (const [extra, expected] of cases) {
    const msg = errorOf(`${ENTRY}${extra}`);
    t.match(msg, `${FILE}: entry 0 (namespace registry.example): ${expected}`, extra.trim());
  }
});

t.test('example.yaml documents fallback_hosts in a form the parser accepts', async (t) => {
  const { readFile } = await import('node:fs/promises');
  const text = await readFile(new URL('../../example.yaml', import.meta.url), 'utf8');
  // The first entry (Docker Hub) names no files that must exist on this machine.
  const first = text.slice(0, text.indexOf('\n# GitHub'));
  const [hub] = parseUpstreamYaml(first, 'example.yaml');
  t.same(
    hub?.fallbackHosts.map((f) => f.host),
    ['mirror.gcr.io', 'hub-cache.internal.example:5000'],
  );
  t.equal(hub?.failoverBackoffMs, 30_000);
});

t.test('every problem of the file is reported at once: each bad key of each entry, one per line', async (t) => {
  let error: unknown;
  try {
    parseUpstreamYaml(
      [
        '- namespace: a.io',
        '  host: a.io',
        '  tls: maybe',
        '  serve_stale: 1',
        '- host: b.io',
        '- namespace: c.io',
        '  host: c.io',
        '  colour: red',
      ].join('\n'),
      FILE,
    );
  } catch (e) {
    error = e;
  }
  t.ok(error instanceof ConfigError);
  const problems = (error as ConfigError).problems;
  t.same(problems, [
    `${FILE}: entry 0 (namespace a.io): key "tls" must be true or false, got "maybe"`,
    `${FILE}: entry 0 (namespace a.io): key "serve_stale" must be true or false, got 1`,
    `${FILE}: entry 1: key "namespace" is required (a string)`,
    `${FILE}: entry 2 (namespace c.io): unknown key "colour"`,
  ]);
  t.equal((error as ConfigError).message, problems.join('\n'), 'the message holds them one per line');
});

t.test('loading reports a duplicate namespace, bad entries and bad UPSTREAM_CREDENTIALS together', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'upstreams.yaml');
  await writeFile(
    file,
    [
      '- namespace: a.io',
      '  host: a.io',
      '- namespace: a.io',
      '  host: b.io',
      '- namespace: c.io',
      '  host: c.io',
      '  read_timeout: soon',
    ].join('\n'),
  );
  try {
    loadMirrorConfig({
      configFile: file,
      credentialsJson: JSON.stringify({ 'bad host!': { username: 'u', password: 'p' }, 'd.io': { username: 'u' } }),
    });
    t.fail('expected a ConfigError');
  } catch (e) {
    t.ok(e instanceof ConfigError);
    t.same((e as ConfigError).problems, [
      `${file}: entry 2 (namespace c.io): key "read_timeout" must be a duration like 0s, 90m, 12h or 14d, got "soon"`,
      `${file}: entry 1 (namespace a.io): key "namespace": "a.io" is already configured by entry 0`,
      'UPSTREAM_CREDENTIALS: entry 0: the key is not a registry host name like docker.io or registry.local:5000',
      'UPSTREAM_CREDENTIALS: namespace "d.io": expected {"username":"...","password":"..."} (two strings)',
    ]);
  }
});

t.test('malformed UPSTREAM_CREDENTIALS JSON is reported without quoting its text (it holds passwords)', async (t) => {
  try {
    loadMirrorConfig({ credentialsJson: '{"docker.io":{"username":"u","password":Pw7xQ}}' });
    t.fail('expected a ConfigError');
  } catch (e) {
    t.ok(e instanceof ConfigError);
    t.notMatch((e as Error).message, /Pw7xQ/);
    t.match((e as Error).message, /^UPSTREAM_CREDENTIALS: invalid JSON/);
  }
});
