import t from 'tap';
import {
  DOCKER_HUB,
  DOCKER_HUB_ALIASES,
  DOCKER_HUB_REGISTRY_HOST,
  isDockerHubHost,
  registryHostOf,
  upstreamRepository,
} from '../../src/oci/docker-hub.js';

t.test('docker.io is fetched from registry-1.docker.io', async (t) => {
  t.equal(registryHostOf(DOCKER_HUB), 'registry-1.docker.io');
});

t.test('any other namespace is its own registry host', async (t) => {
  t.equal(registryHostOf('ghcr.io'), 'ghcr.io');
  t.equal(registryHostOf('registry.local:5000'), 'registry.local:5000');
});

t.test('the registry host is one of the Docker Hub aliases', async (t) => {
  t.ok(DOCKER_HUB_ALIASES.has(DOCKER_HUB_REGISTRY_HOST));
});

t.test('isDockerHubHost knows index.docker.io, registry-1.docker.io and registry.hub.docker.com in any case', async (t) => {
  for (const host of ['index.docker.io', 'registry-1.docker.io', 'registry.hub.docker.com', 'Registry-1.Docker.IO'])
    t.ok(isDockerHubHost(host), host);
});

t.test('isDockerHubHost: other hosts, and docker.io itself (a namespace, not a registry host), are not Docker Hub hosts', async (t) => {
  t.notOk(isDockerHubHost('ghcr.io'));
  t.notOk(isDockerHubHost('auth.docker.io'));
  t.notOk(isDockerHubHost('docker.io'));
});

t.test('a single-segment Docker Hub repository is an official image under library/', async (t) => {
  t.equal(upstreamRepository(DOCKER_HUB, 'nginx'), 'library/nginx');
});

t.test('a Docker Hub repository with a slash is kept as it is', async (t) => {
  t.equal(upstreamRepository(DOCKER_HUB, 'bitnami/redis'), 'bitnami/redis');
  t.equal(upstreamRepository(DOCKER_HUB, 'library/nginx'), 'library/nginx');
});

t.test('library/ is Docker Hub only: other namespaces keep single-segment names', async (t) => {
  t.equal(upstreamRepository('ghcr.io', 'app'), 'app');
});
