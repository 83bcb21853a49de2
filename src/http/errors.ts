import type { FastifyReply } from 'fastify';
import { OciError, type OciErrorCode } from '../oci/errors.js';

/** The one place that knows which HTTP status each OCI error code gets. */
const STATUS: Record<OciErrorCode, number> = {
  BLOB_UNKNOWN: 404,
  MANIFEST_UNKNOWN: 404,
  NAME_UNKNOWN: 404,
  NOT_FOUND: 404,
  NAME_INVALID: 400,
  TAG_INVALID: 400,
  DIGEST_INVALID: 400,
  MANIFEST_INVALID: 400,
  SIZE_INVALID: 400,
  PAGINATION_NUMBER_INVALID: 400,
  UNAUTHORIZED: 401,
  DENIED: 403,
  UNSUPPORTED: 405,
  RANGE_INVALID: 416,
  TOOMANYREQUESTS: 429,
  INTERNAL: 500,
  UPSTREAM_ERROR: 502,
  UPSTREAM_UNAVAILABLE: 503,
  UPSTREAM_TIMEOUT: 504,
};

export function statusOf(code: OciErrorCode): number {
  return STATUS[code];
}

export function errorBody(err: OciError): string {
  const entry: { code: string; message: string; detail?: unknown } = { code: err.code, message: err.message };
  if (err.detail !== undefined) entry.detail = err.detail;
  return JSON.stringify({ errors: [entry] });
}

/** Sends an OCI error response; HEAD gets the status and headers without a body. */
export function sendOciError(reply: FastifyReply, err: OciError): FastifyReply {
  const status = statusOf(err.code);
  reply.code(status).header('content-type', 'application/json');
  if (err.retryAfter !== undefined) reply.header('retry-after', String(err.retryAfter));
  else if (status === 429 || status === 503) reply.header('retry-after', '10');
  for (const [k, v] of Object.entries(err.headers ?? {})) reply.header(k, v);
  const body = errorBody(err);
  if (reply.request.method === 'HEAD') return reply.header('content-length', Buffer.byteLength(body)).send();
  return reply.send(body);
}

/** Anything that is not an OciError: a bug or a framework error. Never leaks a stack trace. */
export function toOciError(e: unknown): OciError {
  if (e instanceof OciError) return e;
  const err = e as { statusCode?: number; code?: string; message?: string };
  if (err.statusCode === 404) return new OciError('NOT_FOUND', 'not found');
  if (err.statusCode === 405) return new OciError('UNSUPPORTED', 'method not supported');
  if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
    return new OciError('UNSUPPORTED', 'bad request', { detail: { reason: err.code ?? 'invalid request' } });
  }
  return new OciError('INTERNAL', 'internal error');
}
