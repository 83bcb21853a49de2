import t from 'tap';
import { DOCKER_HUB, DOCKER_HUB_ALIASES } from '../../src/oci/docker-hub.js';
import { canonicalNamespace, isValidNamespace, looksLikeHost } from '../../src/oci/namespace.js';

t.test('a namespace is a host name with an optional port, or a bracketed IP literal', async (t) => {
  for (const good of [
    'docker.io',
    'localhost',
    'localhost:5000',
    'registry.local:5000',
    '127.0.0.1:8080',
    '[::1]:5000',
    'my-registry.example.com',
    'Registry.Example',
  ]) {
    t.ok(isValidNamespace(good), good);
  }
});

t.test('a scheme, a path, a bad label, an empty port or a six-digit port is not a namespace', async (t) => {
  for (const bad of [
    '',
    'https://docker.io',
    'docker.io/v2',
    '-bad.io',
    'bad-.io',
    'a..b',
    'docker.io:',
    'docker.io:123456',
    'has space.io',
    'under_score.io',
  ]) {
    t.notOk(isValidNamespace(bad), JSON.stringify(bad));
  }
});

t.test('a namespace longer than a DNS name (255 characters) is refused', async (t) => {
  const label = 'a'.repeat(63);
  const long = [label, label, label, label].join('.');
  t.equal(long.length, 255);
  t.ok(isValidNamespace(long));
  t.notOk(isValidNamespace(`${long}a`));
});

t.test('canonicalNamespace lower-cases and trims: host names are case-insensitive', async (t) => {
  t.equal(canonicalNamespace(' GHCR.io '), 'ghcr.io');
  t.equal(canonicalNamespace('Registry.Local:5000'), 'registry.local:5000');
});

t.test('canonicalNamespace folds every Docker Hub alias, in any case, into docker.io', async (t) => {
  for (const alias of DOCKER_HUB_ALIASES) {
    t.equal(canonicalNamespace(alias), DOCKER_HUB, alias);
    t.equal(canonicalNamespace(alias.toUpperCase()), DOCKER_HUB, alias.toUpperCase());
  }
  t.equal(canonicalNamespace('docker.io'), DOCKER_HUB);
});

t.test('looksLikeHost: a dot, a port or localhost make a component a host', async (t) => {
  t.ok(looksLikeHost('ghcr.io'));
  t.ok(looksLikeHost('registry:5000'));
  t.ok(looksLikeHost('localhost'));
});

t.test('looksLikeHost: a lower-case dotless component is a repository component', async (t) => {
  t.notOk(looksLikeHost('library'));
  t.notOk(looksLikeHost('my-org'));
  t.notOk(looksLikeHost('my_org'));
  t.notOk(looksLikeHost('registry'));
});

t.test('looksLikeHost: localhost is a host in any case (host names are case-insensitive)', async (t) => {
  t.ok(looksLikeHost('LOCALHOST'));
  t.ok(looksLikeHost('LocalHost'));
});

t.test('looksLikeHost: upper case alone does not make a dotless component a host', async (t) => {
  t.notOk(looksLikeHost('Registry'));
  t.notOk(looksLikeHost('myOrg'));
});
