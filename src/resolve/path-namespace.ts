/**
 * How a namespace is written as the first path segment of the path-prefix dialect (cri-o, podman,
 * buildah, skopeo: `location = "mirror:8080/<segment>"`).
 *
 * Image references allow no `:` inside a path segment, so `mirror:8080/registry.local:5000` is refused by
 * those clients ("invalid reference format"). A namespace with a port is therefore written `host_port`
 * (`registry.local_5000`): `_` cannot occur in a DNS host name or an IPv4 literal, so the last `_` before
 * a trailing port can only be the port separator. `registry.local_5000` is also a valid repository path
 * component, which is what the clients check.
 */

/** `host_port`: a DNS name or IPv4 literal (letters, digits, `.`, `-`), then `_` and 1-5 digits. */
const HOST_PORT = /^([a-zA-Z0-9.-]+)_([0-9]{1,5})$/;
const MAX_PORT = 65_535;

export interface PathHostPort {
  host: string;
  /** The port as written (digits only), kept so that the namespace round-trips exactly. */
  port: string;
  /** `host:port`, the canonical namespace. */
  namespace: string;
}

/**
 * Splits a `host_port` segment, or answers undefined when it is not one (no trailing `_<digits>`, a port
 * outside 1-65535, or a host part that cannot be a host name, such as an IPv6 literal). Whether `host`
 * looks like a host at all is the caller's decision.
 */
export function parsePathHostPort(segment: string): PathHostPort | undefined {
  const m = HOST_PORT.exec(segment);
  if (!m) return undefined;
  const host = m[1] as string;
  const port = m[2] as string;
  const value = Number(port);
  if (value < 1 || value > MAX_PORT) return undefined;
  return { host, port, namespace: `${host}:${port}` };
}

/**
 * The first path segment a path-prefix client must send for `namespace`: the namespace itself, or
 * `host_port` when it has a port. Undefined for an IPv6 literal (`[::1]:5000`): brackets and colons are
 * not allowed in a path segment, and no spelling of one would be unambiguous.
 */
export function pathSegmentFor(namespace: string): string | undefined {
  if (namespace.startsWith('[')) return undefined;
  // Lower case: path components must be, and the mirror folds namespaces to lower case anyway.
  const ns = namespace.toLowerCase();
  const colon = ns.lastIndexOf(':');
  return colon < 0 ? ns : `${ns.slice(0, colon)}_${ns.slice(colon + 1)}`;
}
