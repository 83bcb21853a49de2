import t from 'tap';
import { defaultUpstreamSettings, loadMirrorConfig } from '../../src/config/upstreams.js';
import type { MirrorConfig, UpstreamConfig } from '../../src/config/types.js';
import { OciError } from '../../src/oci/errors.js';
import { parseImageReference } from '../../src/oci/image-reference.js';
import { Resolver, type ResolveInput } from '../../src/resolve/resolver.js';
import { RefusedAddressError, transportError } from '../../src/upstream/errors.js';

function upstream(namespace: string, host: string = namespace): UpstreamConfig {
  return { ...defaultUpstreamSettings(), namespace, host, explicit: true };
}

/** A config as loaded from a file listing these namespaces (allowUnlisted false unless said). */
function withConfig(namespaces: UpstreamConfig[], options: { allowUnlisted?: boolean; defaultNamespace?: string } = {}): MirrorConfig {
  const base = loadMirrorConfig({ defaultNamespace: options.defaultNamespace });
  return {
    ...base,
    upstreams: new Map(namespaces.map((u) => [u.namespace, u])),
    configFile: '/etc/upstreams.yaml',
    allowUnlisted: options.allowUnlisted ?? false,
  };
}

/** No config file: every public namespace may be mirrored. */
const open = (): MirrorConfig => loadMirrorConfig();

function input(name: string, extra: Partial<ResolveInput> = {}): ResolveInput {
  return { name, ns: undefined, registryHeader: undefined, ...extra };
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    if (e instanceof OciError) return e.code;
    throw e;
  }
  return undefined;
}

const listed = withConfig([
  upstream('docker.io', 'registry-1.docker.io'),
  upstream('ghcr.io'),
  upstream('quay.io'),
  upstream('localhost:5000', '127.0.0.1:5000'),
  upstream('registry.local:5000', '10.1.2.3:5000'),
]);

t.test('the ns query parameter names the namespace and the whole path is the repository', async (t) => {
  const r = new Resolver(listed).resolve(input('org/app', { ns: 'ghcr.io' }));
  t.match(r, { namespace: 'ghcr.io', repository: 'org/app', source: 'ns' });
  t.equal(r.upstream.host, 'ghcr.io');
});

t.test('the ns parameter wins over X-Registry and over a host-like first segment', async (t) => {
  const r = new Resolver(listed).resolve(input('quay.io/org/app', { ns: 'ghcr.io', registryHeader: 'docker.io' }));
  t.match(r, { namespace: 'ghcr.io', repository: 'quay.io/org/app', source: 'ns' });
});

t.test('ns=docker.io with a single-segment name gets the library/ prefix', async (t) => {
  t.match(new Resolver(listed).resolve(input('nginx', { ns: 'docker.io' })), { namespace: 'docker.io', repository: 'library/nginx' });
});

t.test('the X-Registry header names the namespace when there is no ns parameter', async (t) => {
  const r = new Resolver(listed).resolve(input('org/app', { registryHeader: 'quay.io' }));
  t.match(r, { namespace: 'quay.io', repository: 'org/app', source: 'header' });
});

t.test('X-Registry wins over a host-like first path segment', async (t) => {
  t.match(new Resolver(listed).resolve(input('ghcr.io/app', { registryHeader: 'quay.io' })), {
    namespace: 'quay.io',
    repository: 'ghcr.io/app',
  });
});

t.test('a first path segment with a dot names the namespace (cri-o / podman mirrors)', async (t) => {
  const r = new Resolver(listed).resolve(input('ghcr.io/org/team/app'));
  t.match(r, { namespace: 'ghcr.io', repository: 'org/team/app', source: 'path' });
});

t.test('a first path segment host:port names the namespace', async (t) => {
  const r = new Resolver(listed).resolve(input('registry.local:5000/team/app'));
  t.match(r, { namespace: 'registry.local:5000', repository: 'team/app', source: 'path' });
  t.equal(r.upstream.host, '10.1.2.3:5000');
});

t.test('a first path segment localhost:port names the namespace', async (t) => {
  const r = new Resolver(listed).resolve(input('localhost:5000/app'));
  t.match(r, { namespace: 'localhost:5000', repository: 'app', source: 'path' });
  t.equal(r.upstream.host, '127.0.0.1:5000');
});

t.test('a bare localhost first segment is host-like', async (t) => {
  const config = withConfig([upstream('localhost', '127.0.0.1:5000')]);
  t.match(new Resolver(config).resolve(input('localhost/app')), { namespace: 'localhost', repository: 'app', source: 'path' });
});

t.test('/v2/docker.io/library/nginx resolves to docker.io library/nginx', async (t) => {
  t.match(new Resolver(listed).resolve(input('docker.io/library/nginx')), {
    namespace: 'docker.io',
    repository: 'library/nginx',
    source: 'path',
  });
});

t.test('/v2/docker.io/nginx gets the library/ prefix', async (t) => {
  t.match(new Resolver(listed).resolve(input('docker.io/nginx')), { namespace: 'docker.io', repository: 'library/nginx' });
});

t.test('a plain name goes to the default namespace, docker.io, with library/ for single segments', async (t) => {
  const resolver = new Resolver(listed);
  t.match(resolver.resolve(input('nginx')), { namespace: 'docker.io', repository: 'library/nginx', source: 'default' });
  t.match(resolver.resolve(input('library/nginx')), { namespace: 'docker.io', repository: 'library/nginx', source: 'default' });
  t.match(resolver.resolve(input('bitnami/redis')), { namespace: 'docker.io', repository: 'bitnami/redis', source: 'default' });
});

t.test('a configured default namespace other than docker.io gets no library/ prefix', async (t) => {
  const config = withConfig([upstream('ghcr.io')], { defaultNamespace: 'ghcr.io' });
  t.match(new Resolver(config).resolve(input('app')), { namespace: 'ghcr.io', repository: 'app', source: 'default' });
});

t.test('Docker Hub aliases are the docker.io namespace', async (t) => {
  const resolver = new Resolver(listed);
  for (const alias of ['index.docker.io', 'registry-1.docker.io', 'registry.hub.docker.com']) {
    t.match(resolver.resolve(input('nginx', { ns: alias })), { namespace: 'docker.io', repository: 'library/nginx' }, alias);
  }
  t.match(resolver.resolve(input('index.docker.io/library/nginx')), { namespace: 'docker.io', repository: 'library/nginx' });
});

t.test('namespaces are case-insensitive', async (t) => {
  t.match(new Resolver(listed).resolve(input('app', { ns: 'GHCR.IO' })), { namespace: 'ghcr.io' });
});

t.test('an unlisted namespace is refused with NAME_UNKNOWN when a config is given', async (t) => {
  const resolver = new Resolver(listed);
  t.equal(
    codeOf(() => resolver.resolve(input('app', { ns: 'gcr.io' }))),
    'NAME_UNKNOWN',
  );
  t.equal(
    codeOf(() => resolver.resolve(input('gcr.io/project/app'))),
    'NAME_UNKNOWN',
  );
  t.equal(
    codeOf(() => resolver.resolve(input('app', { registryHeader: 'public.ecr.aws' }))),
    'NAME_UNKNOWN',
  );
});

t.test('an unlisted private namespace is NAME_UNKNOWN (not a dial) when a config is given', async (t) => {
  t.equal(
    codeOf(() => new Resolver(listed).resolve(input('127.0.0.1:9999/app'))),
    'NAME_UNKNOWN',
  );
});

t.test('without a config, a public namespace is mirrored from https://<namespace> as an implicit upstream', async (t) => {
  const r = new Resolver(open()).resolve(input('gcr.io/project/app'));
  t.match(r, { namespace: 'gcr.io', repository: 'project/app' });
  t.match(r.upstream, { host: 'gcr.io', tls: true, explicit: false });
  t.equal(new Resolver(open()).resolve(input('nginx')).upstream.host, 'registry-1.docker.io');
});

t.test('without a config, loopback, private and link-local literals are refused with DENIED', async (t) => {
  const resolver = new Resolver(open());
  for (const ns of [
    '127.0.0.1',
    '127.0.0.1:5000',
    '10.0.0.1:5000',
    '172.16.5.4',
    '192.168.1.10:443',
    '169.254.169.254',
    '100.64.0.1',
    '0.0.0.0:80',
    '[::1]:5000',
    '[fe80::1]',
    '[fd00::1]:5000',
    '[::ffff:127.0.0.1]:5000',
    '[::127.0.0.1]:5000',
    '[64:ff9b::a9fe:a9fe]',
    '[2002:a00:1::1]:5000',
    'localhost',
    'localhost:5000',
    'registry.localhost:5000',
  ]) {
    t.equal(
      codeOf(() => resolver.resolve(input('app', { ns }))),
      'DENIED',
      ns,
    );
  }
  t.equal(
    codeOf(() => resolver.resolve(input('127.0.0.1:5000/app'))),
    'DENIED',
    'via the path too',
  );
  t.equal(
    codeOf(() => resolver.resolve(input('app', { registryHeader: '10.0.0.1' }))),
    'DENIED',
    'via X-Registry too',
  );
});

t.test('a refused literal or localhost namespace gets the very answer of a name that resolves privately or not at all', async (t) => {
  const resolver = new Resolver(open());
  const answer = (e: OciError): unknown => ({ code: e.code, message: e.message, detail: e.detail });
  const refusal = (ns: string): OciError => {
    try {
      resolver.resolve(input('app', { ns }));
    } catch (e) {
      if (e instanceof OciError) return e;
      throw e;
    }
    throw new Error(`${ns} was not refused`);
  };
  for (const ns of ['10.0.0.1:5000', 'localhost:5000', '[::127.0.0.1]:5000']) {
    const atConnect = [
      transportError(ns, new RefusedAddressError('internal.example', 'resolves to non-public address 10.0.0.1')),
      transportError(ns, new RefusedAddressError('internal.example', 'DNS lookup failed: ENOTFOUND', true)),
    ];
    for (const e of atConnect) t.same(answer(refusal(ns)), answer(e), `${ns}: ${String((e.cause as Error).message)}`);
    t.same(refusal(ns).detail, { namespace: ns }, `${ns}: the detail names only the namespace`);
    t.match(String((refusal(ns).cause as Error).message), /not a public address|local host name/, `${ns}: the reason is kept for the log`);
  }
});

t.test('a private namespace configured explicitly is mirrored', async (t) => {
  const config = withConfig([upstream('127.0.0.1:5000')]);
  t.match(new Resolver(config).resolve(input('127.0.0.1:5000/app')), { namespace: '127.0.0.1:5000', repository: 'app' });
});

t.test('an invalid namespace is NAME_INVALID', async (t) => {
  const resolver = new Resolver(open());
  t.equal(
    codeOf(() => resolver.resolve(input('app', { ns: 'https://ghcr.io' }))),
    'NAME_INVALID',
  );
  t.equal(
    codeOf(() => resolver.resolve(input('app', { ns: 'ghcr.io/x' }))),
    'NAME_INVALID',
  );
  t.equal(
    codeOf(() => resolver.resolve(input('app', { registryHeader: 'a b' }))),
    'NAME_INVALID',
  );
});

t.test('an invalid repository name is NAME_INVALID, before any namespace policy', async (t) => {
  const resolver = new Resolver(listed);
  t.equal(
    codeOf(() => resolver.resolve(input('Nginx'))),
    'NAME_INVALID',
  );
  t.equal(
    codeOf(() => resolver.resolve(input('ghcr.io/Org/app'))),
    'NAME_INVALID',
  );
  t.equal(
    codeOf(() => resolver.resolve(input('a//b', { ns: 'ghcr.io' }))),
    'NAME_INVALID',
  );
  t.equal(
    codeOf(() => resolver.resolve(input('x', { ns: 'unlisted.io' }))),
    'NAME_UNKNOWN',
    'a valid name in an unlisted namespace',
  );
});

t.test('a host-like segment alone (no repository after it) is a repository name of the default namespace', async (t) => {
  // `/v2/ghcr.io/manifests/x` names a repository "ghcr.io" in the default namespace.
  const r = new Resolver(listed).resolve(input('ghcr.io'));
  t.match(r, { namespace: 'docker.io', repository: 'library/ghcr.io', source: 'default' });
});

// ---- host_port: the path form of a namespace with a port (cri-o, podman and skopeo allow no ':' in a path)

t.test('a host_port first segment names the namespace host:port, with its configured upstream', async (t) => {
  const r = new Resolver(listed).resolve(input('registry.local_5000/team/app'));
  t.match(r, { namespace: 'registry.local:5000', repository: 'team/app', source: 'path' });
  t.equal(r.upstream.host, '10.1.2.3:5000');
});

t.test('host_port resolves to exactly what ?ns=host:port resolves to (one namespace, one cache)', async (t) => {
  const resolver = new Resolver(listed);
  const viaPath = resolver.resolve(input('registry.local_5000/team/app'));
  const viaNs = resolver.resolve(input('team/app', { ns: 'registry.local:5000' }));
  t.equal(viaPath.namespace, viaNs.namespace);
  t.equal(viaPath.repository, viaNs.repository);
  t.equal(viaPath.upstream, viaNs.upstream, 'the same upstream config entry');
});

t.test('an IPv4 literal with _port names the namespace ip:port', async (t) => {
  const config = withConfig([upstream('127.0.0.1:5000')]);
  t.match(new Resolver(config).resolve(input('127.0.0.1_5000/library/alpine')), {
    namespace: '127.0.0.1:5000',
    repository: 'library/alpine',
    source: 'path',
  });
});

t.test('localhost_port names the namespace localhost:port', async (t) => {
  t.match(new Resolver(listed).resolve(input('localhost_5000/app')), { namespace: 'localhost:5000', repository: 'app', source: 'path' });
});

t.test('host_port is folded to the lower-case namespace', async (t) => {
  t.match(new Resolver(listed).resolve(input('Registry.Local_5000/app')), { namespace: 'registry.local:5000' });
});

t.test('a dotless first segment with an underscore stays a repository of the default namespace', async (t) => {
  const resolver = new Resolver(listed);
  t.match(resolver.resolve(input('my_repo/app')), { namespace: 'docker.io', repository: 'my_repo/app', source: 'default' });
  t.match(
    resolver.resolve(input('my_5000/app')),
    { namespace: 'docker.io', repository: 'my_5000/app', source: 'default' },
    'even with a port-like suffix',
  );
  t.match(resolver.resolve(input('a__b_1/c')), { namespace: 'docker.io', repository: 'a__b_1/c', source: 'default' });
});

t.test('a dotless name_port names the namespace name:port when that namespace is configured', async (t) => {
  const config = withConfig([upstream('docker.io', 'registry-1.docker.io'), upstream('registry:5000', '10.9.8.7:5000')]);
  const resolver = new Resolver(config);
  t.match(resolver.resolve(input('registry_5000/team/app')), { namespace: 'registry:5000', repository: 'team/app', source: 'path' });
  t.match(
    resolver.resolve(input('registry_5001/team/app')),
    { namespace: 'docker.io', repository: 'registry_5001/team/app', source: 'default' },
    'another port is a repository',
  );
});

t.test('_0, _65536 and longer numbers are no port: a dotted segment is then an invalid namespace', async (t) => {
  const resolver = new Resolver(open());
  for (const segment of ['registry.local_0', 'registry.local_65536', 'registry.local_123456', 'registry.local_', 'registry.local_5a']) {
    t.equal(
      codeOf(() => resolver.resolve(input(`${segment}/app`))),
      'NAME_INVALID',
      segment,
    );
  }
  t.match(resolver.resolve(input('registry.local_65535/app')), { namespace: 'registry.local:65535' }, '65535 is a port');
  t.match(resolver.resolve(input('registry.local_1/app')), { namespace: 'registry.local:1' }, '1 is a port');
});

t.test('only the last _ separates the port: a host part with _ is an invalid namespace', async (t) => {
  t.equal(
    codeOf(() => new Resolver(open()).resolve(input('a_b.example_5000/app'))),
    'NAME_INVALID',
  );
});

t.test('an IPv6 literal has no _port form', async (t) => {
  const config = withConfig([upstream('[::1]:5000')]);
  const resolver = new Resolver(config);
  for (const segment of ['[::1]_5000', '::1_5000', '[--1]_5000']) {
    t.equal(
      codeOf(() => resolver.resolve(input(`${segment}/app`))),
      'NAME_INVALID',
      segment,
    );
  }
  t.match(resolver.resolve(input('app', { ns: '[::1]:5000' })), { namespace: '[::1]:5000' }, 'it is reached with ?ns= instead');
});

t.test('ns and X-Registry take the namespace as written: host_port there is invalid', async (t) => {
  const resolver = new Resolver(listed);
  t.equal(
    codeOf(() => resolver.resolve(input('app', { ns: 'registry.local_5000' }))),
    'NAME_INVALID',
  );
  t.equal(
    codeOf(() => resolver.resolve(input('app', { registryHeader: 'registry.local_5000' }))),
    'NAME_INVALID',
  );
});

t.test('abuse: an unlisted host_port namespace is NAME_UNKNOWN when a config is given, like host:port', async (t) => {
  const resolver = new Resolver(listed);
  t.equal(
    codeOf(() => resolver.resolve(input('127.0.0.1_9999/app'))),
    'NAME_UNKNOWN',
  );
  t.equal(
    codeOf(() => resolver.resolve(input('127.0.0.1:9999/app'))),
    'NAME_UNKNOWN',
  );
  t.equal(
    codeOf(() => resolver.resolve(input('registry.local_5001/app'))),
    'NAME_UNKNOWN',
  );
});

t.test('abuse: without a config, host_port naming a loopback, private or link-local address is DENIED', async (t) => {
  const resolver = new Resolver(open());
  for (const segment of [
    '127.0.0.1_5000',
    '10.0.0.1_5000',
    '192.168.1.10_443',
    '169.254.169.254_80',
    '0.0.0.0_80',
    'localhost_5000',
    'registry.localhost_5000',
  ]) {
    t.equal(
      codeOf(() => resolver.resolve(input(`${segment}/app`))),
      'DENIED',
      segment,
    );
  }
});

t.test('abuse: without a config, a dotless name_port is a repository name, never a host to dial', async (t) => {
  // Otherwise `/v2/internal_5000/app` would make the mirror look up the cluster-internal name "internal".
  const r = new Resolver(open()).resolve(input('internal_5000/app'));
  t.match(r, { namespace: 'docker.io', repository: 'internal_5000/app', source: 'default' });
  t.equal(r.upstream.host, 'registry-1.docker.io');
});

t.test('abuse: without a config, an upper-case dotless first segment is not a host to dial but an invalid name', async (t) => {
  // docker's reference parser would take `Internal` for a host; the mirror would then look up "internal".
  t.equal(
    codeOf(() => new Resolver(open()).resolve(input('Internal/app'))),
    'NAME_INVALID',
  );
});

t.test('a path and an image reference name the same namespace and repository (one host-like test, one library/ rule)', async (t) => {
  const resolver = new Resolver(open());
  for (const name of [
    'nginx',
    'bitnami/redis',
    'ghcr.io/org/app',
    'GHCR.IO/org/app',
    'index.docker.io/nginx',
    'registry-1.docker.io/org/app',
    'quay.io',
    'a.b/c/d/e',
  ]) {
    const viaPath = resolver.resolve(input(name));
    const viaReference = parseImageReference(name);
    t.same([viaPath.namespace, viaPath.repository], [viaReference.namespace, viaReference.repository], name);
  }
  t.throws(() => parseImageReference('Internal/app'), 'an upper-case dotless component is refused by both');
});
