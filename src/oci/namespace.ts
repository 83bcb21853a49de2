import { DOCKER_HUB, isDockerHubHost } from './docker-hub.js';

/**
 * Registry namespaces: the `host[:port]` a client names a registry by (`docker.io`, `ghcr.io`,
 * `registry.local:5000`, `[::1]:5000`). Host names are DNS names, so case-insensitive: the canonical
 * form is lower case, with Docker Hub's aliases folded into `docker.io`.
 */

const LABEL = '[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?';
const NAMESPACE = new RegExp(`^${LABEL}(?:\\.${LABEL})*(?::[0-9]{1,5})?$|^\\[[0-9a-fA-F:.]+\\](?::[0-9]{1,5})?$`);
/** A DNS name has at most 255 characters. */
const MAX_NAMESPACE_LENGTH = 255;

/** Whether `ns` is a host name or IP literal with an optional port (no scheme, no path). */
export function isValidNamespace(ns: string): boolean {
  return ns.length <= MAX_NAMESPACE_LENGTH && NAMESPACE.test(ns);
}

/** Lower case, surrounding blanks dropped, Docker Hub aliases as `docker.io`. */
export function canonicalNamespace(ns: string): string {
  const lower = ns.trim().toLowerCase();
  return isDockerHubHost(lower) ? DOCKER_HUB : lower;
}

/**
 * Whether the first component of an image reference or request path names a registry host rather than
 * a repository: it has a dot or a port, or is `localhost` (in any case: host names are case-insensitive).
 *
 * Upper case alone does not make a host, unlike docker's splitDockerDomain: a dotless name is what the
 * mirror never dials unless configured (`/v2/Internal/app` must not send it looking up a cluster-internal
 * name "internal"). Such a component stays a repository component, which the OCI name grammar (lower
 * case) then refuses: the client is told the name is invalid instead of having a host guessed.
 */
export function looksLikeHost(component: string): boolean {
  return component.includes('.') || component.includes(':') || component.toLowerCase() === 'localhost';
}
