import t from 'tap';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import {
  crioNotes,
  defaultNamespaces,
  dockerDaemonConfig,
  parseMirrorAddress,
  parseNamespaceList,
  registerClientConfig,
  renderContainerdFiles,
  renderContainerdHostsToml,
  renderCrioRegistriesConf,
  renderDockerDaemonJson,
  serverUrlFor,
  type ClientConfigIo,
} from '../../src/cli/client-config.js';
import { ConfigError, defaultUpstreamSettings, implicitUpstream, loadMirrorConfig } from '../../src/config/upstreams.js';
import type { UpstreamConfig } from '../../src/config/types.js';

const upstream = (namespace: string, host: string, tls = true): UpstreamConfig => ({
  ...defaultUpstreamSettings(),
  namespace,
  host,
  tls,
  explicit: true,
});

/** The non-comment, non-empty lines: what containerd / containers-registries actually parse. */
const meaningful = (text: string): string[] => text.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('#'));

t.test('parseMirrorAddress', async (t) => {
  t.same(parseMirrorAddress('http://mirror:8080', false), {
    scheme: 'http',
    host: 'mirror:8080',
    url: 'http://mirror:8080',
    explicitScheme: true,
  });
  t.same(parseMirrorAddress('https://mirror.example/', false), {
    scheme: 'https',
    host: 'mirror.example',
    url: 'https://mirror.example',
    explicitScheme: true,
  });
  t.same(parseMirrorAddress('mirror:8080', true), {
    scheme: 'http',
    host: 'mirror:8080',
    url: 'http://mirror:8080',
    explicitScheme: false,
  });
  t.same(parseMirrorAddress('HTTP://Mirror:8080', false).url, 'http://mirror:8080', 'scheme and host are normalized');
  t.equal(parseMirrorAddress('http://[::1]:8080', false).host, '[::1]:8080', 'IPv6 keeps its brackets');
  t.throws(() => parseMirrorAddress('mirror:8080', false), ConfigError, 'a URL is required where a scheme matters');
  t.throws(() => parseMirrorAddress('http://mirror:8080/v2', false), /without a path/);
  t.throws(() => parseMirrorAddress('http://mirror:8080/?x=1', false), /without a path/);
  t.throws(() => parseMirrorAddress('http://user:pw@mirror:8080', false), /credentials/);
  t.throws(() => parseMirrorAddress('ftp://mirror', false), /http or https/);
});

t.test('parseNamespaceList splits commas, accepts repeats, drops duplicates and refuses bad names', async (t) => {
  t.same(parseNamespaceList(['docker.io,ghcr.io', 'quay.io', 'docker.io', ' registry.local:5000 ']), [
    'docker.io',
    'ghcr.io',
    'quay.io',
    'registry.local:5000',
  ]);
  t.same(parseNamespaceList([]), []);
  t.throws(() => parseNamespaceList(['docker.io/library']), ConfigError);
  t.throws(() => parseNamespaceList(['https://ghcr.io']), ConfigError);
});

t.test('defaultNamespaces: flags, else the upstream config, else docker.io', async (t) => {
  const ups = [upstream('docker.io', 'registry-1.docker.io'), upstream('ghcr.io', 'ghcr.io')];
  t.same(defaultNamespaces(['quay.io'], ups), ['quay.io']);
  t.same(defaultNamespaces([], ups), ['docker.io', 'ghcr.io']);
  t.same(defaultNamespaces([], []), ['docker.io']);
});

t.test('serverUrlFor: docker.io falls back to registry-1.docker.io, others to themselves', async (t) => {
  t.equal(serverUrlFor('docker.io'), 'https://registry-1.docker.io');
  t.equal(serverUrlFor('ghcr.io'), 'https://ghcr.io');
  t.equal(serverUrlFor('registry.local:5000'), 'https://registry.local:5000');
  t.equal(
    serverUrlFor('registry.local:5000', upstream('registry.local:5000', 'registry.local:5000', false)),
    'http://registry.local:5000',
    'plain HTTP when the mirror itself fetches that host over HTTP',
  );
  t.equal(
    serverUrlFor('docker.io', upstream('docker.io', '127.0.0.1:5000', false)),
    'https://registry-1.docker.io',
    "the config host is the mirror's business, not the client's",
  );
});

t.test('containerd hosts.toml: the mirror host with pull+resolve, the registry as server', async (t) => {
  const mirror = parseMirrorAddress('http://mirror:8080', false);
  const toml = renderContainerdHostsToml('docker.io', { mirror });
  t.same(meaningful(toml), [
    'server = "https://registry-1.docker.io"',
    '[host."http://mirror:8080"]',
    '  capabilities = ["pull", "resolve"]',
  ]);
  t.ok(toml.endsWith('\n'));
  t.notMatch(toml, /skip_verify|plain/, 'nothing extra for a plain-http mirror');

  const tls = parseMirrorAddress('https://mirror.example', false);
  t.same(meaningful(renderContainerdHostsToml('ghcr.io', { mirror: tls, skipVerify: true, caFile: '/etc/ssl/mirror-ca.pem' })), [
    'server = "https://ghcr.io"',
    '[host."https://mirror.example"]',
    '  capabilities = ["pull", "resolve"]',
    '  skip_verify = true',
    '  ca = "/etc/ssl/mirror-ca.pem"',
  ]);
  t.notMatch(
    renderContainerdHostsToml('ghcr.io', { mirror, skipVerify: true }),
    /skip_verify/,
    'skip_verify only applies to https mirrors',
  );
});

t.test('containerd files: one <dir>/<namespace>/hosts.toml per namespace, ports kept in the directory name', async (t) => {
  const mirror = parseMirrorAddress('http://10.0.0.5:8080', false);
  const files = renderContainerdFiles(['docker.io', 'registry.local:5000'], '/etc/containerd/certs.d', {
    mirror,
    upstreams: new Map([['registry.local:5000', upstream('registry.local:5000', 'registry.local:5000', false)]]),
  });
  t.same(
    files.map((f) => f.path),
    ['/etc/containerd/certs.d/docker.io/hosts.toml', '/etc/containerd/certs.d/registry.local:5000/hosts.toml'],
  );
  t.match(files[1]!.content, /^server = "http:\/\/registry\.local:5000"$/m);
  t.match(files[0]!.content, /^\[host\."http:\/\/10\.0\.0\.5:8080"\]$/m);
});

t.test('crio registries.conf: path-prefix mirror per namespace, insecure for plain HTTP', async (t) => {
  const conf = renderCrioRegistriesConf(['docker.io', 'ghcr.io'], { mirror: parseMirrorAddress('mirror:8080', true) });
  t.same(meaningful(conf), [
    '[[registry]]',
    'prefix = "docker.io"',
    'location = "docker.io"',
    '[[registry.mirror]]',
    'location = "mirror:8080/docker.io"',
    'insecure = true',
    '[[registry]]',
    'prefix = "ghcr.io"',
    'location = "ghcr.io"',
    '[[registry.mirror]]',
    'location = "mirror:8080/ghcr.io"',
    'insecure = true',
  ]);
  t.match(renderCrioRegistriesConf(['docker.io'], { mirror: parseMirrorAddress('https://mirror.example', true) }), /^insecure = false$/m);
  t.match(
    renderCrioRegistriesConf(['docker.io'], { mirror: parseMirrorAddress('mirror:443', true), insecure: false }),
    /^insecure = false$/m,
  );
  t.notMatch(conf, /unqualified-search-registries/, 'a drop-in fragment: no global keys');
});

t.test('crio registries.conf: a namespace with a port gets the mirror path host_port, prefix and location keep host:port', async (t) => {
  const conf = renderCrioRegistriesConf(['registry.local:5000', '127.0.0.1:5000'], { mirror: parseMirrorAddress('mirror:8080', true) });
  t.same(meaningful(conf), [
    '[[registry]]',
    'prefix = "registry.local:5000"',
    'location = "registry.local:5000"',
    '[[registry.mirror]]',
    'location = "mirror:8080/registry.local_5000"',
    'insecure = true',
    '[[registry]]',
    'prefix = "127.0.0.1:5000"',
    'location = "127.0.0.1:5000"',
    '[[registry.mirror]]',
    'location = "mirror:8080/127.0.0.1_5000"',
    'insecure = true',
  ]);
  t.match(
    conf,
    /^# registry\.local_5000 is registry\.local:5000: image references allow no ':' inside a path\.$/m,
    'the spelling is explained',
  );
  t.notMatch(meaningful(conf).join('\n'), /location = "[^"]*\/[^"]*:/, 'no colon after the mirror host in any mirror location');
});

t.test('crio registries.conf: an IPv6 namespace gets a comment, not an entry a client would refuse', async (t) => {
  const conf = renderCrioRegistriesConf(['docker.io', '[fd00::1]:5000'], { mirror: parseMirrorAddress('mirror:8080', true) });
  t.notMatch(conf, /fd00::1\]:5000"/, 'no [[registry]] for it');
  t.match(conf, /^# \[fd00::1\]:5000: not mirrored here: an IPv6 address cannot be written in a mirror path/m);
  t.match(conf, /location = "mirror:8080\/docker\.io"/, 'the other namespaces are still there');
});

t.test('crioNotes: IPv6 namespaces left out, and dotless name:port namespaces the upstream config does not list', async (t) => {
  t.same(crioNotes(['docker.io', 'registry.local:5000', 'localhost:5000'], new Set()), [], 'nothing to say');
  t.match(crioNotes(['[::1]:5000'], new Set()), [/\[::1\]:5000 was left out/]);
  t.match(crioNotes(['registry:5000'], new Set()), [
    /registry_5000\/\.\.\. as namespace registry:5000 only when registry:5000 is in its upstream config/,
  ]);
  t.same(crioNotes(['registry:5000'], new Set(['registry:5000'])), [], 'listed: the mirror reads it');
});

t.test('docker daemon.json: registry-mirrors, plus insecure-registries for a plain-http mirror', async (t) => {
  t.same(dockerDaemonConfig(parseMirrorAddress('http://mirror:8080', false)), {
    'registry-mirrors': ['http://mirror:8080'],
    'insecure-registries': ['mirror:8080'],
  });
  t.same(dockerDaemonConfig(parseMirrorAddress('https://mirror.example', false)), { 'registry-mirrors': ['https://mirror.example'] });
  t.same(JSON.parse(renderDockerDaemonJson(parseMirrorAddress('http://mirror:8080', false))), {
    'registry-mirrors': ['http://mirror:8080'],
    'insecure-registries': ['mirror:8080'],
  });
});

/** A program like main.ts's: the global --upstream-config-file, then client-config registered. */
function program(io: ClientConfigIo): Command {
  const p = new Command();
  p.exitOverride();
  p.configureOutput({ writeOut: () => undefined, writeErr: () => undefined });
  p.addOption(new Option('--upstream-config-file <file>'));
  registerClientConfig(p, io);
  return p;
}

function captureIo(): ClientConfigIo & { out: string; err: string; files: Map<string, string> } {
  const io = {
    out: '',
    err: '',
    files: new Map<string, string>(),
    stdout: (s: string) => {
      io.out += s;
    },
    stderr: (s: string) => {
      io.err += s;
    },
    writeFile: (path: string, content: string) => {
      io.files.set(path, content);
    },
  };
  return io;
}

t.test('CLI containerd: writes one file per namespace from the upstream config', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'client-config-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const config = join(dir, 'upstreams.yaml');
  await writeFile(config, '- namespace: docker.io\n  host: registry-1.docker.io\n- namespace: ghcr.io\n  host: ghcr.io\n');
  const io = captureIo();
  await program(io).parseAsync([
    'node',
    'main',
    '--upstream-config-file',
    config,
    'client-config',
    'containerd',
    '--mirror',
    'http://m:8080',
    '--dir',
    '/x/certs.d',
  ]);
  t.same([...io.files.keys()], ['/x/certs.d/docker.io/hosts.toml', '/x/certs.d/ghcr.io/hosts.toml']);
  t.match(io.files.get('/x/certs.d/ghcr.io/hosts.toml'), /server = "https:\/\/ghcr\.io"/);
  t.match(io.out, /wrote \/x\/certs\.d\/docker\.io\/hosts\.toml/);
  t.match(io.err, /config_path/);
});

t.test('CLI containerd --print prints instead of writing; --namespace overrides the config', async (t) => {
  const io = captureIo();
  await program(io).parseAsync([
    'node',
    'main',
    'client-config',
    'containerd',
    '--mirror',
    'http://m:8080',
    '--namespace',
    'quay.io,docker.io',
    '--print',
  ]);
  t.equal(io.files.size, 0);
  t.match(io.out, /# ---- \/etc\/containerd\/certs\.d\/quay\.io\/hosts\.toml\n/);
  t.match(io.out, /server = "https:\/\/registry-1\.docker\.io"/);
});

t.test('CLI containerd: the default writer creates the directories', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'client-config-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const p = new Command();
  p.exitOverride();
  p.addOption(new Option('--upstream-config-file <file>'));
  const err: string[] = [];
  const out: string[] = [];
  const origOut = process.stdout.write.bind(process.stdout);
  const origErr = process.stderr.write.bind(process.stderr);
  // Default io: real files, real stdout/stderr (captured here).
  registerClientConfig(p);
  process.stdout.write = ((s: string) => (out.push(s), true)) as typeof process.stdout.write;
  process.stderr.write = ((s: string) => (err.push(s), true)) as typeof process.stderr.write;
  try {
    await p.parseAsync([
      'node',
      'main',
      'client-config',
      'containerd',
      '--mirror',
      'http://127.0.0.1:5000',
      '--dir',
      dir,
      '--namespace',
      'docker.io,127.0.0.1:6000',
    ]);
  } finally {
    process.stdout.write = origOut;
    process.stderr.write = origErr;
  }
  t.ok(existsSync(join(dir, 'docker.io', 'hosts.toml')));
  t.match(await readFile(join(dir, '127.0.0.1:6000', 'hosts.toml'), 'utf8'), /\[host\."http:\/\/127\.0\.0\.1:5000"\]/);
  t.equal(out.length, 2);
});

t.test('CLI crio and docker print their fragments; docker notes that it mirrors docker.io only', async (t) => {
  const io = captureIo();
  await program(io).parseAsync(['node', 'main', 'client-config', 'crio', '--mirror', 'mirror:8080']);
  t.match(io.out, /location = "mirror:8080\/docker\.io"/);
  const io2 = captureIo();
  await program(io2).parseAsync(['node', 'main', 'client-config', 'docker', '--mirror', 'http://mirror:8080']);
  t.same(JSON.parse(io2.out), { 'registry-mirrors': ['http://mirror:8080'], 'insecure-registries': ['mirror:8080'] });
  t.match(io2.err, /docker\.io\) images only/);
});

t.test('CLI crio: a port namespace from the upstream config gets host_port; a dotless one not in it gets a note', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'client-config-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const config = join(dir, 'upstreams.yaml');
  await writeFile(
    config,
    '- namespace: "registry:5000"\n  host: "10.0.0.9:5000"\n  tls: false\n- namespace: "127.0.0.1:5000"\n  host: "127.0.0.1:5000"\n',
  );
  const io = captureIo();
  await program(io).parseAsync(['node', 'main', '--upstream-config-file', config, 'client-config', 'crio', '--mirror', 'mirror:8080']);
  t.match(io.out, /location = "mirror:8080\/registry_5000"/);
  t.match(io.out, /location = "mirror:8080\/127\.0\.0\.1_5000"/);
  t.equal(io.err, '', 'both are in the config: nothing to warn about');
  const io2 = captureIo();
  await program(io2).parseAsync([
    'node',
    'main',
    'client-config',
    'crio',
    '--mirror',
    'mirror:8080',
    '--namespace',
    'registry:5000,[::1]:5000',
  ]);
  t.match(io2.err, /only when registry:5000 is in its upstream config/);
  t.match(io2.err, /\[::1\]:5000 was left out/);
});

t.test('CLI: bad input is a ConfigError naming the flag', async (t) => {
  await t.rejects(
    program(captureIo()).parseAsync(['node', 'main', 'client-config', 'docker', '--mirror', 'http://m:8080/path']),
    /--mirror/,
  );
  await t.rejects(
    program(captureIo()).parseAsync(['node', 'main', 'client-config', 'crio', '--mirror', 'm:8080', '--namespace', 'not a host']),
    /--namespace/,
  );
  await t.rejects(
    program(captureIo()).parseAsync([
      'node',
      'main',
      '--upstream-config-file',
      '/nonexistent/upstreams.yaml',
      'client-config',
      'crio',
      '--mirror',
      'm:8080',
    ]),
    /cannot read upstream config/,
  );
  await t.rejects(program(captureIo()).parseAsync(['node', 'main', 'client-config', 'containerd']), /mirror/, '--mirror is mandatory');
});

t.test('the fallback server of a namespace is the host the mirror fetches it from without a config', async (t) => {
  const config = loadMirrorConfig();
  for (const ns of ['docker.io', 'ghcr.io', 'registry.local:5000']) {
    t.equal(new URL(serverUrlFor(ns)).host, implicitUpstream(ns, config).host, ns);
  }
});
