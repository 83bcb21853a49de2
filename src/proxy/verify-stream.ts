import { Transform, type TransformCallback } from 'node:stream';
import { createDigester, parseDigest } from '../oci/digest.js';
import { OciError } from '../oci/errors.js';

/**
 * Passes bytes through while hashing them, always holding the latest chunk back; the held chunk is
 * released only when the digest matches at the end. On a mismatch the stream errors, so the client's
 * connection is cut before its last bytes: it never completes a response with a wrong digest. So does a
 * body longer than `maxBytes` (an upstream sending without end).
 */
export function verifyingStream(digest: string, onMismatch?: () => void, maxBytes = Number.POSITIVE_INFINITY): Transform {
  const d = parseDigest(digest);
  const hash = createDigester(d.algorithm);
  let held: Buffer | undefined;
  let bytes = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, callback: TransformCallback) {
      bytes += chunk.length;
      if (bytes > maxBytes) {
        callback(new OciError('UPSTREAM_ERROR', 'upstream blob is larger than the mirror accepts', { detail: { digest, maxBytes } }));
        return;
      }
      hash.update(chunk);
      const out = held;
      held = chunk;
      callback(null, out);
    },
    flush(callback: TransformCallback) {
      const actual = `${d.algorithm}:${hash.digest('hex')}`;
      if (actual !== digest) {
        onMismatch?.();
        callback(new OciError('BLOB_UNKNOWN', 'blob does not match its digest', { detail: { digest, actual } }));
        return;
      }
      callback(null, held);
    },
  });
}
