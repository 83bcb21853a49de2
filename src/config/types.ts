/** One upstream registry, after validation and defaults. Keys mirror the YAML (snake_case there). */
export interface UpstreamConfig {
  /** What clients name: `docker.io`, `ghcr.io`, `registry.internal:5000`. */
  namespace: string;
  /** Where it is fetched from: `registry-1.docker.io`, `127.0.0.1:5000`. May carry a port. */
  host: string;
  tls: boolean;
  acceptInvalidCerts: boolean;
  userAgent: string | undefined;
  username: string | undefined;
  password: string | undefined;
  /**
   * A Docker credential helper (`ecr-login` runs `docker-credential-ecr-login get`) that supplies the
   * credentials instead of username/password; its answer is cached for credentialTtlMs.
   */
  credentialHelper: string | undefined;
  credentialTtlMs: number;
  manifestInvalidationMs: number;
  blobInvalidationMs: number;
  /** PEM bundle trusted in addition to the system CAs. */
  caFile: string | undefined;
  clientCertFile: string | undefined;
  clientKeyFile: string | undefined;
  /** Serve expired cache entries when upstream is down, times out or answers 429/5xx. */
  serveStale: boolean;
  connectTimeoutMs: number;
  /** Time to wait for response headers, and the longest gap between body chunks. */
  readTimeoutMs: number;
  /**
   * Hosts (`host` or `host:port`) besides the upstream's own host name that may receive its credentials
   * as a Bearer token realm; other realms get an anonymous token request. Docker Hub's is built in.
   */
  tokenRealmHosts: readonly string[];
  /** htpasswd file (bcrypt entries): clients must authenticate to pull this namespace through the mirror. */
  clientAuthFile: string | undefined;
  /**
   * Other hosts serving the same registry, tried in order when this host refuses connections, times out
   * or answers 5xx/429 (src/upstream/failover.ts). Empty for implicit upstreams.
   */
  fallbackHosts: readonly FallbackHost[];
  /** How long a failed host is skipped at first; doubles per renewed failure up to MAX_FAILOVER_BACKOFF_MS. */
  failoverBackoffMs: number;
  /** True when the entry comes from the config file (an operator named it), false for implicit public mirroring. */
  explicit: boolean;
}

/**
 * A fallback host of an upstream entry. Unset fields are the entry's own (same TLS settings, credentials,
 * token realms); `credentials` set means this host has its own and never sees the entry's.
 */
export interface FallbackHost {
  host: string;
  tls?: boolean | undefined;
  acceptInvalidCerts?: boolean | undefined;
  caFile?: string | undefined;
  clientCertFile?: string | undefined;
  clientKeyFile?: string | undefined;
  credentials?: { username: string; password: string } | { credentialHelper: string } | undefined;
  tokenRealmHosts?: readonly string[] | undefined;
}

export interface MirrorConfig {
  /** Configured upstreams by namespace. */
  upstreams: ReadonlyMap<string, UpstreamConfig>;
  /** The config file they came from, for messages. */
  configFile: string | undefined;
  /** Namespace for requests that name none (Docker's registry-mirrors): docker.io. */
  defaultNamespace: string;
  /**
   * Whether namespaces absent from the config are mirrored from https://<namespace>. True without a
   * config file; with one, only when the operator opts in. Private addresses are refused either way.
   */
  allowUnlisted: boolean;
  /** Defaults applied to implicit upstreams. */
  defaults: Omit<UpstreamConfig, 'namespace' | 'host' | 'explicit'>;
}

export const DEFAULT_INVALIDATION_MS = 14 * 86_400_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
export const DEFAULT_READ_TIMEOUT_MS = 60_000;
export const DEFAULT_FAILOVER_BACKOFF_MS = 30_000;
export const MAX_FAILOVER_BACKOFF_MS = 5 * 60_000;
export const DEFAULT_CREDENTIAL_TTL_MS = 15 * 60_000;
