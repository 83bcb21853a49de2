/** How far an upstream can make the mirror download and spool (`--max-blob-size`, `--max-spool-size`). */
export interface DownloadLimits {
  /** A blob announcing more is refused (502); a body running past it is cut. */
  maxBlobSize: number;
  /** Bytes on local disk held by downloads in progress; past it new uncached pulls stream without spooling. */
  maxSpoolSize: number;
}

/** Larger than any real layer (the biggest ML layers are tens of GiB), far below what a lying upstream announces. */
export const DEFAULT_MAX_BLOB_SIZE = 64 * 1024 ** 3;
/** A few large layers at once on a small node's disk. */
export const DEFAULT_MAX_SPOOL_SIZE = 8 * 1024 ** 3;

/**
 * The bytes local spool files (and filesystem temp files, which are the spool there) may hold. A download
 * is admitted while the total is below the limit and then charged its announced size in full (or, with
 * none announced, each byte as it arrives), so the total passes the limit by at most the download
 * admitted last plus the growth of unannounced ones; it is credited back when its files are gone.
 */
export class SpoolBudget {
  private used = 0;

  constructor(readonly limit: number) {}

  /** Whether a new download may spool now. */
  get admits(): boolean {
    return this.used < this.limit;
  }

  get bytes(): number {
    return this.used;
  }

  charge(bytes: number): void {
    this.used += bytes;
  }

  refund(bytes: number): void {
    this.used = Math.max(0, this.used - bytes);
  }
}
