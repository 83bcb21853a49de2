import type { Readable } from 'node:stream';

/** A blob body on its way: its announced size (Content-Length) when known, and the bytes. */
export interface SourceBody {
  size: number | undefined;
  body: Readable;
}

/**
 * Where a download gets the blob: called once, when the download starts. An upstream GET today; any
 * other place that can hand over the bytes (another replica) fits the same shape. The download checks
 * the digest whatever the source.
 */
export type DownloadSource = () => Promise<SourceBody>;
