import type { Readable } from 'node:stream';

/**
 * The one interface between the cache policy (src/proxy) and where bytes live.
 * Implementations: storage/filesystem, storage/s3. Storage knows nothing of HTTP or upstreams,
 * and never verifies digests itself: the caller hashes while writing and commits only on a match.
 *
 * Keys are already validated by the caller (src/oci grammars), but implementations must still
 * refuse to address anything outside their root.
 */

export interface BlobStat {
  size: number;
  /** When the blob was last fetched or re-validated upstream (the collector's last use; re-validation is timed per link). */
  modified: Date;
}

/** Inclusive byte range, as in HTTP. */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * A blob body that can also fill buffers its consumer owns, so a sender can reuse two buffers for a
 * whole transfer instead of the stream allocating one per read (measured warm, 256 MiB: allocation
 * churn cost half the throughput). The filesystem backend's readBlob returns one. A consumer uses
 * either the stream interface or fill(), never both, and destroy()s the stream when done.
 */
export interface BufferFiller {
  /** Reads the next bytes into `buffer`; resolves with how many, 0 at the end. */
  fill(buffer: Buffer): Promise<number>;
  /** The buffer size this body reads best with; the sender's default otherwise. */
  readonly bufferSize?: number;
  /**
   * Takes back the last `bytes` bytes fill() delivered: the next fill() returns them again. Lets a sender
   * free a buffer it filled for a client that stopped reading instead of holding it until the client reads
   * again. Not after fill() resolved 0: a body may let go of its source at its end.
   */
  rewind?(bytes: number): void;
}

export function canFillBuffers(body: Readable): body is Readable & BufferFiller {
  return typeof (body as Partial<BufferFiller>).fill === 'function';
}

export interface BlobWriter {
  /** Resolves when the chunk may be reused and more may be written (backpressure). */
  write(chunk: Buffer): Promise<void>;
  /** Optional: several chunks in one call (one syscall for a local file). */
  writev?(chunks: Buffer[]): Promise<void>;
  /**
   * Makes the blob visible under its digest atomically. Called only after the caller verified the
   * digest of everything written. If a blob with that digest already exists, that is a success.
   */
  commit(): Promise<void>;
  /** Discards everything written; nothing becomes visible. Safe to call more than once, or after a failed commit. */
  abort(): Promise<void>;
  /**
   * A local file that holds the bytes written so far, when the backend writes one (filesystem).
   * Concurrent readers may read it positionally while writing goes on; lets the proxy avoid a second spool copy.
   */
  readonly localPath?: string;
}

export interface StoredManifest {
  mediaType: string;
  bytes: Buffer;
  /** When it was fetched from upstream. */
  fetchedAt: Date;
}

/** A tag -> digest mapping: the only mutable thing a mirror stores. */
export interface TagRecord {
  digest: string;
  mediaType: string;
  size: number;
  /** When upstream last confirmed the mapping; drives manifest_invalidation_time. */
  checkedAt: Date;
}

export interface RepositoryRef {
  /** Upstream namespace, e.g. `docker.io`, `ghcr.io`, `localhost:5000`. */
  namespace: string;
  /** Repository name inside the namespace, e.g. `library/nginx`. */
  repository: string;
}

/** What a link gives access to: a blob, or a manifest by digest. */
export type LinkKind = 'blob' | 'manifest';

export interface BlobListing {
  digest: string;
  size: number;
  modified: Date;
}

export interface ManifestListing {
  digest: string;
  /** Size of the manifest bytes. */
  size: number;
  /** When it was stored (fetched from upstream). S3 reports the object's LastModified, set by the same write. */
  fetchedAt: Date;
}

export interface InitOptions {
  /**
   * Another process (a running server) may be using this storage, as when an admin command opens it:
   * prepare it without removing temp files, which may be that process's writes in flight.
   */
  shared?: boolean;
}

export interface Storage {
  /** A short name for logs and metrics: `filesystem` or `s3`. */
  readonly kind: string;

  /**
   * The local directory the cache lives in, when it has one (filesystem): what free-space checks and a
   * cache size given in percent measure. Undefined for remote backends.
   */
  readonly localRoot?: string | undefined;

  /** Prepares the backend (create directories; unless `shared`, sweep temp files left by a crash). */
  init(options?: InitOptions): Promise<void>;

  statBlob(digest: string): Promise<BlobStat | undefined>;
  /** Streams the blob (or a range of it); undefined when absent. */
  readBlob(digest: string, range?: ByteRange): Promise<Readable | undefined>;
  createBlobWriter(digest: string): Promise<BlobWriter>;
  deleteBlob(digest: string): Promise<void>;
  /** Marks a blob as freshly re-validated upstream. */
  touchBlob(digest: string): Promise<void>;
  listBlobs(): AsyncIterable<BlobListing>;

  getManifest(digest: string): Promise<StoredManifest | undefined>;
  /** Atomic; the caller verified that `bytes` hash to `digest`. */
  putManifest(digest: string, manifest: StoredManifest): Promise<void>;
  deleteManifest(digest: string): Promise<void>;

  getTag(repo: RepositoryRef, tag: string): Promise<TagRecord | undefined>;
  putTag(repo: RepositoryRef, tag: string, record: TagRecord): Promise<void>;
  /** Tags cached for a repository, in lexical order. */
  listTags(repo: RepositoryRef): Promise<string[]>;
  /** Removes one tag record; absent is fine. A repository without tags is no longer listed. */
  deleteTag(repo: RepositoryRef, tag: string): Promise<void>;
  /** Repositories with at least one tag record, in no particular order, each once. */
  listRepositories(): AsyncIterable<RepositoryRef>;
  listManifests(): AsyncIterable<ManifestListing>;

  // Links: content is stored once per digest, but served through a repository only once that repository's
  // upstream has shown it holds the digest (a download through it, or a HEAD there). A link records that,
  // with its time. A link may outlive its content (deleted by the collector): that is a miss, not an error.

  /** When `repo` was linked to the digest; undefined when it is not. */
  getLink(repo: RepositoryRef, kind: LinkKind, digest: string): Promise<Date | undefined>;
  /** Records (or re-times) a link; atomic. */
  putLink(repo: RepositoryRef, kind: LinkKind, digest: string, linkedAt: Date): Promise<void>;
  /** Removes a link; absent is fine. Never touches the content. */
  deleteLink(repo: RepositoryRef, kind: LinkKind, digest: string): Promise<void>;

  // Small named state objects (the cache lifecycle's access times, one object per replica). Names are
  // `[a-z0-9._-]+` segments joined by `/`, never `.` or `..` (storage/state-name.ts); others throw.

  /** A state object's bytes; undefined when absent. */
  getState(name: string): Promise<Buffer | undefined>;
  /** Writes a state object atomically, replacing any previous one. */
  putState(name: string, bytes: Buffer): Promise<void>;
  /** Names of the state objects starting with `prefix` (e.g. `access/`), in lexical order. */
  listState(prefix: string): Promise<string[]>;
  /** Removes a state object; absent is fine. */
  deleteState(name: string): Promise<void>;

  /**
   * Optional: a short-lived URL from which a client may fetch the blob directly (S3 presigned GET),
   * for backends that support redirecting clients. Undefined when the blob is absent.
   */
  blobUrl?(digest: string, expiresInSeconds: number): Promise<string | undefined>;

  /** Readiness: the backend can be written to. Throws with a reason when not. */
  checkWritable(): Promise<void>;
  close(): Promise<void>;
}
