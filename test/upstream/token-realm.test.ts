import t from 'tap';
import { defaultUpstreamSettings } from '../../src/config/upstreams.js';
import type { UpstreamConfig } from '../../src/config/types.js';
import { DOCKER_HUB_ALIASES } from '../../src/oci/docker-hub.js';
import { mayReceiveCredentials } from '../../src/upstream/token-realm.js';

function upstream(host: string, overrides: Partial<UpstreamConfig> = {}): UpstreamConfig {
  return { ...defaultUpstreamSettings(), namespace: host, host, explicit: true, ...overrides };
}

const may = (config: UpstreamConfig, realm: string): boolean => mayReceiveCredentials(config, new URL(realm));

t.test("a realm on the upstream's own host name gets the credentials, whatever its port or path", async (t) => {
  t.ok(may(upstream('ghcr.io'), 'https://ghcr.io/token'));
  t.ok(may(upstream('registry.example:5000'), 'https://registry.example/service/token'));
  t.ok(may(upstream('REGISTRY.example'), 'https://registry.EXAMPLE:8443/token'), 'host names compare case-insensitively');
  t.ok(may(upstream('[::1]:5000', { tls: false }), 'http://[::1]:5001/token'));
});

t.test('a realm on another host gets no credentials unless token_realm_hosts lists it', async (t) => {
  t.notOk(may(upstream('registry.gitlab.com'), 'https://gitlab.com/jwt/auth'));
  t.notOk(may(upstream('registry.example'), 'https://evil.example/token'));
  t.notOk(may(upstream('registry.example'), 'https://registry.example.evil.example/token'), 'a suffix is another host');
  t.ok(may(upstream('registry.gitlab.com', { tokenRealmHosts: ['gitlab.com'] }), 'https://gitlab.com/jwt/auth'));
  t.ok(
    may(upstream('registry.gitlab.com', { tokenRealmHosts: ['gitlab.com'] }), 'https://gitlab.com:8443/jwt/auth'),
    'no port listed: any port',
  );
});

t.test('a listed host with a port matches that port only (the scheme default when the realm names none)', async (t) => {
  const config = upstream('registry.example', { tokenRealmHosts: ['auth.example:8443', 'auth2.example:443'] });
  t.ok(may(config, 'https://auth.example:8443/token'));
  t.notOk(may(config, 'https://auth.example/token'));
  t.ok(may(config, 'https://auth2.example/token'));
  t.notOk(may(config, 'https://auth2.example:444/token'));
});

t.test("Docker Hub's token realm auth.docker.io is built in for its registry hosts, and only for them", async (t) => {
  for (const host of ['registry-1.docker.io', 'index.docker.io', 'registry.hub.docker.com']) {
    t.ok(may(upstream(host), 'https://auth.docker.io/token?service=registry.docker.io'), host);
  }
  t.notOk(may(upstream('ghcr.io'), 'https://auth.docker.io/token'));
  t.notOk(may(upstream('registry-1.docker.io'), 'https://auth.docker.io.evil.example/token'));
});

t.test('a TLS upstream never sends its credentials to a plain-HTTP realm, even on its own host', async (t) => {
  t.notOk(may(upstream('ghcr.io'), 'http://ghcr.io/token'));
  t.notOk(may(upstream('registry-1.docker.io'), 'http://auth.docker.io/token'));
  t.ok(may(upstream('registry.local:5000', { tls: false }), 'http://registry.local:5000/token'), 'a plain-HTTP upstream may');
});

t.test('every Docker Hub registry host may send its credentials to auth.docker.io', async (t) => {
  for (const host of DOCKER_HUB_ALIASES) {
    t.ok(may({ ...defaultUpstreamSettings(), namespace: 'docker.io', host, explicit: true }, 'https://auth.docker.io/token'), host);
  }
});
