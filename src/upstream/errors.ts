import { OciError, type OciErrorCode } from '../oci/errors.js';

/**
 * Raised by the guarded connector of an unlisted upstream: its host is not a public address, resolves to
 * one that is not, or does not resolve at all. The message has the real reason, for the log only.
 */
export class RefusedAddressError extends Error {
  readonly code = 'EREFUSEDADDRESS';
  /** The refusal came from a failed DNS lookup (possibly temporary), not from an address we saw. */
  readonly dnsFailure: boolean;
  constructor(host: string, reason: string, dnsFailure = false) {
    super(`${host}: ${reason}`);
    this.dnsFailure = dnsFailure;
  }
}

/**
 * The one answer for an unlisted namespace we will not dial, whatever the reason: a non-public address,
 * a name that resolves to one, or a name that does not resolve. Telling these apart would let a client
 * map the internal DNS (which names exist, which are private); the reason goes to the log via `cause`.
 */
export class RefusedNamespaceError extends OciError {
  private readonly temporary: boolean;
  constructor(namespace: string, cause: Error, temporary = false) {
    super('DENIED', 'namespace does not resolve to a public address; configure it explicitly to mirror it', {
      detail: { namespace },
      cause,
    });
    this.temporary = temporary;
  }

  /** A DNS failure may be a resolver outage: a cached copy may still be served stale (same answer otherwise). */
  override get isUpstreamOutage(): boolean {
    return this.temporary;
  }
}

const NETWORK_UNAVAILABLE = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
]);
const TIMEOUTS = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT', 'ABORT_ERR']);

/** Maps a transport failure to an OCI error value; detail names the namespace, never credentials. */
export function transportError(namespace: string, e: unknown): OciError {
  if (e instanceof OciError) return e;
  const err = e as { code?: string; message?: string; cause?: { code?: string } };
  const code = err.code ?? err.cause?.code ?? '';
  const refused = e instanceof RefusedAddressError ? e : err.cause instanceof RefusedAddressError ? err.cause : undefined;
  if (refused) return new RefusedNamespaceError(namespace, refused, refused.dnsFailure);
  if (code === 'EREFUSEDADDRESS') return new RefusedNamespaceError(namespace, new Error(err.message ?? 'refused address'));
  if (TIMEOUTS.has(code)) {
    return new OciError('UPSTREAM_TIMEOUT', 'upstream timed out', { detail: { namespace, reason: code }, cause: e });
  }
  if (NETWORK_UNAVAILABLE.has(code) || code.startsWith('ERR_TLS') || code.startsWith('UNABLE_') || code.includes('CERT')) {
    return new OciError('UPSTREAM_UNAVAILABLE', 'upstream unreachable', { detail: { namespace, reason: code }, cause: e });
  }
  return new OciError('UPSTREAM_ERROR', 'upstream request failed', { detail: { namespace, reason: code || err.message }, cause: e });
}

/** Maps an unexpected upstream status to an OCI error value. */
export function statusError(namespace: string, status: number, notFound: OciErrorCode, retryAfterHeader?: string): OciError {
  if (status === 404) return new OciError(notFound, 'not found upstream', { detail: { namespace } });
  if (status === 401 || status === 403) {
    return new OciError('DENIED', 'upstream denied access: the repository does not exist or the mirror lacks credentials for it', {
      detail: { namespace, upstreamStatus: status },
    });
  }
  if (status === 429) {
    const retryAfter = parseRetryAfter(retryAfterHeader);
    return new OciError('TOOMANYREQUESTS', 'upstream rate limit', {
      detail: { namespace },
      ...(retryAfter === undefined ? {} : { retryAfter }),
    });
  }
  if (status === 503 || status === 502 || status === 504) {
    return new OciError('UPSTREAM_UNAVAILABLE', 'upstream unavailable', { detail: { namespace, upstreamStatus: status } });
  }
  return new OciError('UPSTREAM_ERROR', 'unexpected upstream response', { detail: { namespace, upstreamStatus: status } });
}

function parseRetryAfter(value: string | undefined): number | undefined {
  if (!value) return undefined;
  const n = Number(value);
  if (Number.isFinite(n) && n >= 0) return Math.ceil(n);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, Math.ceil((date - Date.now()) / 1000));
}
