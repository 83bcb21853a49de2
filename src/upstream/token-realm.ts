import type { UpstreamConfig } from '../config/types.js';
import { DOCKER_HUB_AUTH_HOST, isDockerHubHost } from '../oci/docker-hub.js';

/**
 * Token realms on another host that are known to belong to an upstream host. Docker Hub's registry
 * (registry-1.docker.io) sends clients to auth.docker.io for tokens; without this the implicit docker.io
 * upstream could not use its credentials. Every other upstream lists its realm hosts in token_realm_hosts.
 */
function knownRealmHosts(upstreamHost: string): readonly string[] {
  return isDockerHubHost(upstreamHost) ? [DOCKER_HUB_AUTH_HOST] : [];
}

/**
 * Whether the upstream's credentials may be sent to this token realm. A 401 challenge names the realm,
 * so whoever answers for the upstream (or a compromised one) could otherwise collect the credentials on a
 * host of its choice. Allowed: the upstream's own host name (any port), the hosts in token_realm_hosts
 * (a port there must match), and the known realms above; never over plain HTTP when the upstream uses TLS.
 */
export function mayReceiveCredentials(config: UpstreamConfig, realm: URL): boolean {
  if (config.tls && realm.protocol !== 'https:') return false;
  const upstreamHost = hostOf(config.host).name;
  if (realm.hostname === upstreamHost) return true;
  const port = realm.port || (realm.protocol === 'https:' ? '443' : '80');
  return [...config.tokenRealmHosts, ...knownRealmHosts(upstreamHost)].some((entry) => {
    const allowed = hostOf(entry);
    return allowed.name === realm.hostname && (allowed.port === undefined || Number(allowed.port) === Number(port));
  });
}

/** `Host:port` or `[v6]:port` split, the name lower-cased as URL.hostname has it. */
function hostOf(hostPort: string): { name: string; port: string | undefined } {
  const m = /^(\[[^\]]*\]|[^:]*)(?::(\d+))?$/.exec(hostPort);
  return { name: (m?.[1] ?? hostPort).toLowerCase(), port: m?.[2] };
}
