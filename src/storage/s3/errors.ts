/** Recognising S3 errors the backend maps to "absent" rather than throwing. */

interface S3ErrorShape {
  name?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
}

/** A missing key (GET: NoSuchKey; HEAD has no body, so only a 404 `NotFound`). A missing bucket is not "absent": it throws. */
export function isNotFound(e: unknown): boolean {
  if (typeof e !== 'object' || e === null) return false;
  const err = e as S3ErrorShape;
  const name = err.name ?? err.Code;
  if (name === 'NoSuchBucket') return false;
  return name === 'NoSuchKey' || name === 'NotFound' || err.$metadata?.httpStatusCode === 404;
}

export function isInvalidRange(e: unknown): boolean {
  if (typeof e !== 'object' || e === null) return false;
  const err = e as S3ErrorShape;
  return err.name === 'InvalidRange' || err.$metadata?.httpStatusCode === 416;
}

export function httpStatusOf(e: unknown): number | undefined {
  if (typeof e !== 'object' || e === null) return undefined;
  return (e as S3ErrorShape).$metadata?.httpStatusCode;
}

export function describeError(e: unknown): string {
  if (e instanceof Error) {
    const status = httpStatusOf(e);
    return `${e.name}${status ? ` (HTTP ${status})` : ''}: ${e.message}`;
  }
  return String(e);
}
