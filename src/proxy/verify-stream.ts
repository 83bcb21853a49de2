import { Transform, type TransformCallback } from 'node:stream';
import { createDigester, parseDigest } from '../oci/digest.js';
import { OciError } from '../oci/errors.js';

/**
 * Passes bytes through while hashing them, always holding the latest chunk back; the held chunk is
 * released only when the digest matches at the end. On a mismatch the stream errors, so the client's
 * connection is cut before its last bytes: it never completes a response with a wrong digest.
 */
export function verifyingStream(digest: string, onMismatch?: () => void): Transform {
  const d = parseDigest(digest);
  const hash = createDigester(d.algorithm);
  let held: Buffer | undefined;
  return new Transform({
    transform(chunk: Buffer, _enc, callback: TransformCallback) {
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
