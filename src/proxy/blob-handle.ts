import type { Readable } from 'node:stream';
import type { ByteRange } from '../storage/storage.js';
import type { CacheOutcome } from './events.js';

/**
 * What the HTTP layer gets for a blob: its size (to answer HEAD and compute ranges) and a way to
 * open the bytes. Exactly one of open() or dispose() must be called, so shared resources are released.
 */
export interface BlobHandle {
  readonly size: number | undefined;
  readonly outcome: CacheOutcome;
  /** A `Warning` header value when the blob is served past its invalidation time. */
  readonly warning: string | undefined;
  /** Whether open() honours a range; a direct uncached stream cannot. */
  readonly rangeable: boolean;
  /** A URL the client may fetch directly instead (storage redirect mode). */
  readonly redirect: string | undefined;
  /** The upstream confirmed the digest for this repository on this request, which linked it (for the log). */
  readonly linked?: boolean;
  open(range?: ByteRange): Promise<Readable>;
  dispose(): void;
}

export const STALE_WARNING = '110 - "Response is Stale"';
