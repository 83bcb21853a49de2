/**
 * Docker Hub's names, in one place. Clients write `docker.io` (or nothing) for Docker Hub, but its
 * registry API answers at registry-1.docker.io, its tokens come from auth.docker.io, docker keeps its
 * credentials under an index.docker.io URL, and its official images live under `library/`.
 */

/** The namespace clients mean when they name no registry, and what every Docker Hub alias becomes. */
export const DOCKER_HUB = 'docker.io';

/** Where Docker Hub's registry API answers (what a client contacts for docker.io). */
export const DOCKER_HUB_REGISTRY_HOST = 'registry-1.docker.io';

/** Other names of Docker Hub's registry: all of them mean the docker.io namespace. */
export const DOCKER_HUB_ALIASES: ReadonlySet<string> = new Set(['index.docker.io', DOCKER_HUB_REGISTRY_HOST, 'registry.hub.docker.com']);

/** Docker Hub's token realm host, on another host than its registry. */
export const DOCKER_HUB_AUTH_HOST = 'auth.docker.io';

/** The key docker (and its credential helpers) store Docker Hub credentials under. */
export const DOCKER_HUB_CREDENTIALS_KEY = 'https://index.docker.io/v1/';

/** Whether a host name (no port) is one of Docker Hub's registry hosts. Host names are case-insensitive. */
export function isDockerHubHost(host: string): boolean {
  return DOCKER_HUB_ALIASES.has(host.toLowerCase());
}

/** What a client contacts for a namespace without a mirror: docker.io is registry-1.docker.io, any other namespace itself. */
export function registryHostOf(namespace: string): string {
  return namespace === DOCKER_HUB ? DOCKER_HUB_REGISTRY_HOST : namespace;
}

/** The repository as upstream knows it: Docker Hub's single-segment names are official images under `library/`. */
export function upstreamRepository(namespace: string, repository: string): string {
  return namespace === DOCKER_HUB && !repository.includes('/') ? `library/${repository}` : repository;
}
