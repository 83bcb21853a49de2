import { isIP } from 'node:net';
import { implicitUpstream } from '../config/upstreams.js';
import type { MirrorConfig, UpstreamConfig } from '../config/types.js';
import { upstreamRepository } from '../oci/docker-hub.js';
import { OciError } from '../oci/errors.js';
import { canonicalNamespace, isValidNamespace, looksLikeHost } from '../oci/namespace.js';
import { isValidRepositoryName } from '../oci/names.js';
import { isLocalHostName, isPublicAddress } from '../upstream/address-policy.js';
import { RefusedNamespaceError } from '../upstream/errors.js';
import { parsePathHostPort } from './path-namespace.js';

export type NamespaceSource = 'ns' | 'header' | 'path' | 'default';

export interface ResolvedRepository {
  namespace: string;
  /** Repository inside the namespace, as upstream knows it (`library/nginx`). */
  repository: string;
  upstream: UpstreamConfig;
  source: NamespaceSource;
}

export interface ResolveInput {
  /** The `<name>` part of `/v2/<name>/...`, undecoded path segments joined by `/`. */
  name: string;
  /** containerd's `?ns=` query parameter. */
  ns: string | undefined;
  /** An `X-Registry` request header. */
  registryHeader: string | undefined;
}

/**
 * Decides which upstream serves a request: `ns` query parameter, then `X-Registry`, then a host-like
 * first path segment (cri-o/podman mirrors; looksLikeHost in oci/namespace.ts; `host_port` for a
 * namespace with a port, see path-namespace.ts), then the default namespace (Docker's registry-mirrors).
 */
export class Resolver {
  constructor(private readonly config: MirrorConfig) {}

  /** The namespace of requests that name none. */
  get defaultNamespace(): string {
    return this.config.defaultNamespace;
  }

  resolve(input: ResolveInput): ResolvedRepository {
    if (input.ns !== undefined) return this.finish(input.ns, input.name, 'ns');
    if (input.registryHeader !== undefined) return this.finish(input.registryHeader, input.name, 'header');
    const slash = input.name.indexOf('/');
    if (slash > 0) {
      const namespace = this.pathNamespace(input.name.slice(0, slash));
      if (namespace !== undefined) return this.finish(namespace, input.name.slice(slash + 1), 'path');
    }
    return this.finish(this.config.defaultNamespace, input.name, 'default');
  }

  /**
   * The namespace a first path segment names, or undefined when it is a repository component of the
   * default namespace. `host_port` names `host:port` when the host looks like one (a dot, localhost or
   * upper case); a dotless lower-case `name_port` (`my_5000`, a legitimate repository component) only
   * when `name:port` is configured, so that an in-cluster registry like `registry:5000` can be mirrored
   * while unconfigured names stay repositories.
   */
  private pathNamespace(segment: string): string | undefined {
    const hostPort = parsePathHostPort(segment);
    if (hostPort && (looksLikeHost(hostPort.host) || this.config.upstreams.has(canonicalNamespace(hostPort.namespace)))) {
      return hostPort.namespace;
    }
    return looksLikeHost(segment) ? segment : undefined;
  }

  /** The upstream for a namespace, or an OCI error when it may not be mirrored. */
  upstreamFor(namespace: string): UpstreamConfig {
    const configured = this.config.upstreams.get(namespace);
    if (configured) return configured;
    if (!this.config.allowUnlisted) {
      throw new OciError('NAME_UNKNOWN', 'namespace is not mirrored here', { detail: { namespace } });
    }
    const hostOnly = stripPort(namespace);
    // Same answer as a name that resolves to a private address or not at all (see RefusedNamespaceError).
    if (isLocalHostName(hostOnly)) throw new RefusedNamespaceError(namespace, new Error(`${hostOnly} is a local host name`));
    if (isIP(hostOnly) !== 0 && !isPublicAddress(hostOnly))
      throw new RefusedNamespaceError(namespace, new Error(`${hostOnly} is not a public address`));
    return implicitUpstream(namespace, this.config);
  }

  private finish(rawNamespace: string, repository: string, source: NamespaceSource): ResolvedRepository {
    const namespace = canonicalNamespace(rawNamespace);
    if (!isValidNamespace(namespace)) {
      throw new OciError('NAME_INVALID', 'invalid namespace', { detail: { namespace: rawNamespace.slice(0, 256) } });
    }
    if (!isValidRepositoryName(repository)) {
      throw new OciError('NAME_INVALID', 'invalid repository name', { detail: { name: repository.slice(0, 256) } });
    }
    const upstream = this.upstreamFor(namespace);
    return { namespace, repository: upstreamRepository(namespace, repository), upstream, source };
  }
}

function stripPort(namespace: string): string {
  if (namespace.startsWith('[')) return namespace.slice(1, namespace.indexOf(']'));
  const colon = namespace.lastIndexOf(':');
  return colon > 0 ? namespace.slice(0, colon) : namespace;
}
