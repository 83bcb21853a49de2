import { errorText } from '../../error-text.js';
import type { SourceBody } from './download-source.js';

/** No local spool file could be created (disk full, unwritable temp dir); carries the unread body. */
export class SpoolUnavailableError extends Error {
  constructor(
    readonly source: SourceBody,
    cause: unknown,
  ) {
    super(`cannot create a spool file: ${errorText(cause)}`, { cause });
  }
}

/** The spool is at its bound (--max-spool-size): not a disk failure; the body is streamed uncached. */
export class SpoolFullError extends SpoolUnavailableError {
  constructor(source: SourceBody) {
    super(source, new Error('the spool is at --max-spool-size'));
  }
}
