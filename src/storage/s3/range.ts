import { type Readable, Transform, type TransformCallback } from 'node:stream';
import type { ByteRange } from '../storage.js';

/** `bytes a-b/size` (size may be `*`). */
export function parseContentRange(value: string | undefined): { start: number; end: number } | undefined {
  const m = value ? /^bytes (\d+)-(\d+)\/(?:\d+|\*)$/.exec(value.trim()) : null;
  if (!m) return undefined;
  return { start: Number(m[1]), end: Number(m[2]) };
}

/**
 * Checks a ranged GetObject answer against the request, so that a wrong byte never reaches a client.
 * S3 answers exactly the range (clamped to the object's end). Some S3-compatible servers answer more
 * (s3rver takes `bytes=0-0` for the whole object), or ignore Range: when the answer starts at the
 * right offset the body is cut to length, otherwise this throws.
 */
export function fitToRange(
  body: Readable,
  range: ByteRange,
  contentRange: string | undefined,
  contentLength: number | undefined,
): Readable {
  const wanted = range.end - range.start + 1;
  const got = parseContentRange(contentRange) ?? (contentRange === undefined ? { start: 0, end: (contentLength ?? 0) - 1 } : undefined);
  if (!got || got.start !== range.start) {
    body.destroy();
    throw new Error(`S3 answered bytes ${contentRange ?? '(whole object)'} for the range ${range.start}-${range.end}`);
  }
  if (got.end <= range.end) return body; // exact, or clamped at the end of the object
  return body.pipe(limit(wanted, body));
}

/** Passes the first `length` bytes through, then ends and stops the source. */
function limit(length: number, source: Readable): Transform {
  let left = length;
  const out = new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
      if (left <= 0) return callback();
      const piece = chunk.length <= left ? chunk : chunk.subarray(0, left);
      left -= piece.length;
      this.push(piece);
      if (left <= 0) {
        source.unpipe(out);
        source.destroy();
        this.push(null);
      }
      callback();
    },
  });
  source.once('error', (e) => out.destroy(e));
  return out;
}
