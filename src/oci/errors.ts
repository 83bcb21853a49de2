/**
 * Errors are values: every failure that reaches a client is an OciError with a code.
 * The HTTP status for each code lives in one place, src/http/errors.ts.
 */
export type OciErrorCode =
  | 'BLOB_UNKNOWN'
  | 'MANIFEST_UNKNOWN'
  | 'NAME_UNKNOWN'
  | 'NAME_INVALID'
  | 'TAG_INVALID'
  | 'DIGEST_INVALID'
  | 'MANIFEST_INVALID'
  | 'UNAUTHORIZED'
  | 'DENIED'
  | 'UNSUPPORTED'
  | 'TOOMANYREQUESTS'
  | 'RANGE_INVALID'
  | 'NOT_FOUND'
  | 'SIZE_INVALID'
  | 'PAGINATION_NUMBER_INVALID'
  // Not in the distribution spec: failures of the upstream seen by a mirror.
  | 'UPSTREAM_ERROR'
  | 'UPSTREAM_UNAVAILABLE'
  | 'UPSTREAM_TIMEOUT'
  | 'INTERNAL';

export interface OciErrorOptions {
  detail?: unknown;
  /** Seconds, for TOOMANYREQUESTS and UPSTREAM_UNAVAILABLE. */
  retryAfter?: number;
  /** Extra response headers (e.g. a WWW-Authenticate challenge). */
  headers?: Record<string, string>;
  cause?: unknown;
}

export class OciError extends Error {
  readonly code: OciErrorCode;
  readonly detail: unknown;
  readonly retryAfter: number | undefined;
  readonly headers: Record<string, string> | undefined;

  constructor(code: OciErrorCode, message: string, options: OciErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'OciError';
    this.code = code;
    this.detail = options.detail;
    this.retryAfter = options.retryAfter;
    this.headers = options.headers;
  }

  /** True for failures that mean "the upstream could not answer", where a stale cache entry may serve. */
  get isUpstreamOutage(): boolean {
    return (
      this.code === 'UPSTREAM_ERROR' ||
      this.code === 'UPSTREAM_UNAVAILABLE' ||
      this.code === 'UPSTREAM_TIMEOUT' ||
      this.code === 'TOOMANYREQUESTS'
    );
  }
}

export function isOciError(e: unknown): e is OciError {
  return e instanceof OciError;
}
