import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type _Object,
  type HeadObjectCommandOutput,
  type S3Client,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type {
  BlobListing,
  BlobStat,
  BlobWriter,
  ByteRange,
  LinkKind,
  ManifestListing,
  RepositoryRef,
  Storage,
  StoredManifest,
  TagRecord,
} from '../storage.js';
import { S3BlobWriter } from './blob-writer.js';
import { createS3Client } from './client.js';
import { describeError, httpStatusOf, isInvalidRange, isNotFound } from './errors.js';
import { S3Keys } from './keys.js';
import { resolveS3Options, type ResolvedS3Options, type S3StorageOptions } from './options.js';
import { fitToRange } from './range.js';
import { checkStateName, checkStatePrefix } from '../state-name.js';

export type { S3StorageOptions } from './options.js';

/** The S3 backend for these options; call init() before use. Throws on invalid options. */
export function createS3Storage(options: S3StorageOptions): S3Storage {
  const resolved = resolveS3Options(options);
  return new S3Storage(createS3Client(resolved), resolved);
}

/** Object metadata (x-amz-meta-*) names. */
const META_FETCHED_AT = 'fetched-at';
const META_VERIFIED_AT = 'verified-at';

/** Multipart uploads older than this are taken as abandoned by a crashed process. */
export const STALE_UPLOAD_AGE_MS = 24 * 60 * 60 * 1000;
/** SigV4 presigned URLs live at most 7 days. */
const MAX_PRESIGN_SECONDS = 7 * 24 * 60 * 60;

interface TagJson {
  digest: string;
  mediaType: string;
  size: number;
  checkedAt: string;
}

/**
 * The cache in an S3 bucket (AWS or S3-compatible). Layout: see keys.ts.
 *
 * Every write is a single PutObject or a multipart upload completed at commit, so an object is
 * either absent or complete: no temp keys, no sweeping. 404 reads give undefined; every other S3
 * error throws, and the proxy falls back to upstream.
 *
 * touchBlob: a blob up to 5 GiB is re-stamped by CopyObject onto itself with MetadataDirective
 * REPLACE and metadata `verified-at` (on AWS this also moves LastModified, which listBlobs reports).
 * S3 copies the data server-side, no bytes travel, but CopyObject is limited to 5 GiB, so a bigger
 * blob instead gets a tiny side object `blob-meta/<alg>/<hex>` holding the time; statBlob and
 * listBlobs consult it only for blobs over that size, so the common case stays one HEAD. (On a
 * versioned bucket each touch keeps an old version: use an unversioned bucket or expire
 * noncurrent versions.) statBlob reads `verified-at` too; listBlobs has only LastModified, so on a
 * server whose self-copy keeps LastModified (s3rver does) the listing may show an older time.
 *
 * blobUrl presigns with the client's credentials: with temporary ones (IRSA, instance profile)
 * the URL stops working when they expire, whatever expiresInSeconds says.
 */
export class S3Storage implements Storage {
  readonly kind = 's3';
  readonly keys: S3Keys;
  readonly bucket: string;

  constructor(
    readonly client: S3Client,
    private readonly options: ResolvedS3Options,
  ) {
    this.keys = new S3Keys(options.prefix);
    this.bucket = options.bucket;
  }

  async init(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch (e) {
      const where = this.options.endpoint ? ` at ${this.options.endpoint}` : ` in region ${this.options.region}`;
      const status = httpStatusOf(e);
      const why =
        status === 404
          ? 'it does not exist'
          : status === 403
            ? 'access denied (check the credentials and s3:ListBucket on the bucket)'
            : describeError(e);
      throw new Error(`S3 bucket "${this.bucket}"${where} is not usable: ${why}`, { cause: e });
    }
    // Best effort: a failure here (no s3:ListBucketMultipartUploads, a server without the API)
    // must not keep the mirror from starting.
    try {
      const aborted = await this.abortStaleUploads(new Date(Date.now() - STALE_UPLOAD_AGE_MS));
      if (aborted > 0) this.options.logger?.info?.({ bucket: this.bucket, aborted }, 'aborted stale multipart uploads');
    } catch (e) {
      this.options.logger?.warn({ bucket: this.bucket, err: describeError(e) }, 'could not list or abort stale multipart uploads');
    }
  }

  /**
   * Aborts multipart uploads under blobs/ started before `before`. A process that dies mid-upload
   * leaves its parts behind: invisible, but billed as storage until aborted. Uploads of other
   * replicas sharing the bucket look the same, so only those older than a day (far longer than any
   * blob upload takes) are taken as abandoned. A bucket lifecycle rule
   * (AbortIncompleteMultipartUpload) does the same job where it is configured; this covers buckets
   * and S3-compatible servers without one. Returns how many were aborted.
   */
  async abortStaleUploads(before: Date): Promise<number> {
    let aborted = 0;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      const page = await this.client.send(
        new ListMultipartUploadsCommand({
          Bucket: this.bucket,
          Prefix: this.keys.blobs,
          KeyMarker: keyMarker,
          UploadIdMarker: uploadIdMarker,
        }),
      );
      for (const upload of page.Uploads ?? []) {
        if (!upload.Key || !upload.UploadId || !upload.Initiated || upload.Initiated >= before) continue;
        try {
          await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: upload.Key, UploadId: upload.UploadId }));
          aborted++;
        } catch (e) {
          if (!isNotFound(e)) throw e; // NoSuchUpload: finished or aborted meanwhile
        }
      }
      if (!page.IsTruncated) return aborted;
      keyMarker = page.NextKeyMarker;
      uploadIdMarker = page.NextUploadIdMarker;
      if (!keyMarker && !uploadIdMarker) return aborted;
    }
  }

  async statBlob(digest: string): Promise<BlobStat | undefined> {
    const head = await this.head(this.keys.blob(digest));
    if (!head) return undefined;
    const size = head.ContentLength ?? 0;
    let modified = latest(head.LastModified, parseTime(head.Metadata?.[META_VERIFIED_AT]));
    if (size > this.options.touchCopyMaxBytes) modified = latest(modified, await this.sideTouchTime(digest));
    return { size, modified: modified ?? new Date(0) };
  }

  async readBlob(digest: string, range?: ByteRange): Promise<Readable | undefined> {
    const key = this.keys.blob(digest);
    let res;
    try {
      res = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: range ? `bytes=${range.start}-${range.end}` : undefined }),
      );
    } catch (e) {
      if (isNotFound(e)) return undefined;
      // Like reading past the end of a file: nothing. Callers check ranges against statBlob first.
      if (range && isInvalidRange(e)) return Readable.from([]);
      throw e;
    }
    const body = res.Body;
    if (!(body instanceof Readable)) throw new Error('S3 GetObject returned no stream body');
    return range ? fitToRange(body, range, res.ContentRange, res.ContentLength) : body;
  }

  async createBlobWriter(digest: string): Promise<BlobWriter> {
    return new S3BlobWriter({
      client: this.client,
      bucket: this.bucket,
      key: this.keys.blob(digest),
      partSizeBytes: this.options.partSizeBytes,
      queueSize: this.options.queueSize,
    });
  }

  async deleteBlob(digest: string): Promise<void> {
    // S3 deletes are idempotent: absent keys are fine. The side object exists only for huge touched blobs.
    await Promise.all([this.deleteKey(this.keys.blob(digest)), this.deleteKey(this.keys.blobMeta(digest))]);
  }

  async touchBlob(digest: string): Promise<void> {
    const key = this.keys.blob(digest);
    const head = await this.head(key);
    if (!head) return;
    const now = new Date().toISOString();
    if ((head.ContentLength ?? 0) > this.options.touchCopyMaxBytes) {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: this.keys.blobMeta(digest),
          Body: now,
          ContentType: 'text/plain',
          Metadata: { [META_VERIFIED_AT]: now },
        }),
      );
      return;
    }
    try {
      await this.client.send(
        new CopyObjectCommand({
          Bucket: this.bucket,
          Key: key,
          CopySource: `${this.bucket}/${encodeKey(key)}`,
          MetadataDirective: 'REPLACE',
          Metadata: { ...head.Metadata, [META_VERIFIED_AT]: now },
          ContentType: head.ContentType ?? 'application/octet-stream',
          ...(head.StorageClass ? { StorageClass: head.StorageClass } : {}),
        }),
      );
    } catch (e) {
      if (!isNotFound(e)) throw e; // deleted meanwhile: nothing to touch
    }
  }

  async *listBlobs(): AsyncIterable<BlobListing> {
    let token: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.keys.blobs, ContinuationToken: token }),
      );
      for (const object of page.Contents ?? []) {
        const digest = object.Key ? this.keys.digestOfBlobKey(object.Key) : undefined;
        if (!digest) continue;
        const size = object.Size ?? 0;
        let modified = object.LastModified;
        if (size > this.options.touchCopyMaxBytes) modified = latest(modified, await this.sideTouchTime(digest));
        yield { digest, size, modified: modified ?? new Date(0) };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async getManifest(digest: string): Promise<StoredManifest | undefined> {
    const res = await this.get(this.keys.manifest(digest));
    if (!res) return undefined;
    const fetchedAt = parseTime(res.metadata?.[META_FETCHED_AT]) ?? res.lastModified ?? new Date(0);
    return { mediaType: res.contentType ?? 'application/octet-stream', bytes: res.bytes, fetchedAt };
  }

  async putManifest(digest: string, manifest: StoredManifest): Promise<void> {
    await this.client.send(
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: this.keys.manifest(digest),
        Body: manifest.bytes,
        ContentType: manifest.mediaType,
        Metadata: { [META_FETCHED_AT]: manifest.fetchedAt.toISOString() },
      }),
    );
  }

  async deleteManifest(digest: string): Promise<void> {
    await this.deleteKey(this.keys.manifest(digest));
  }

  async getTag(repo: RepositoryRef, tag: string): Promise<TagRecord | undefined> {
    const res = await this.get(this.keys.tag(repo, tag));
    if (!res) return undefined;
    const r = JSON.parse(res.bytes.toString('utf8')) as TagJson;
    return { digest: r.digest, mediaType: r.mediaType, size: r.size, checkedAt: new Date(r.checkedAt) };
  }

  async putTag(repo: RepositoryRef, tag: string, record: TagRecord): Promise<void> {
    const json: TagJson = {
      digest: record.digest,
      mediaType: record.mediaType,
      size: record.size,
      checkedAt: record.checkedAt.toISOString(),
    };
    await this.client.send(
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: this.keys.tag(repo, tag),
        Body: JSON.stringify(json),
        ContentType: 'application/json',
      }),
    );
  }

  async listTags(repo: RepositoryRef): Promise<string[]> {
    const prefix = this.keys.tags(repo);
    const tags: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, Delimiter: '/', ContinuationToken: token }),
      );
      for (const object of page.Contents ?? []) {
        if (object.Key && object.Key.length > prefix.length) tags.push(object.Key.slice(prefix.length));
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return tags.sort();
  }

  async deleteTag(repo: RepositoryRef, tag: string): Promise<void> {
    await this.deleteKey(this.keys.tag(repo, tag));
  }

  async *listRepositories(): AsyncIterable<RepositoryRef> {
    // One flat listing of every tag record; keys sharing a repository's prefix come out together.
    const seen = new Set<string>();
    for await (const object of this.listObjects(this.keys.repositories)) {
      const repo = object.Key ? this.keys.repositoryOfTagKey(object.Key) : undefined;
      if (!repo) continue;
      const id = `${repo.namespace}/${repo.repository}`;
      if (seen.has(id)) continue;
      seen.add(id);
      yield repo;
    }
  }

  async *listManifests(): AsyncIterable<ManifestListing> {
    for await (const object of this.listObjects(this.keys.manifests)) {
      const digest = object.Key ? this.keys.digestOfManifestKey(object.Key) : undefined;
      if (!digest) continue;
      // LastModified is set by the PutObject that stored the manifest when it was fetched.
      yield { digest, size: object.Size ?? 0, fetchedAt: object.LastModified ?? new Date(0) };
    }
  }

  async getLink(repo: RepositoryRef, kind: LinkKind, digest: string): Promise<Date | undefined> {
    const res = await this.get(this.keys.link(repo, kind, digest));
    if (!res) return undefined;
    return parseTime(res.bytes.toString('utf8').trim()) ?? res.lastModified;
  }

  async putLink(repo: RepositoryRef, kind: LinkKind, digest: string, linkedAt: Date): Promise<void> {
    await this.client.send(
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: this.keys.link(repo, kind, digest),
        Body: linkedAt.toISOString(),
        ContentType: 'text/plain',
      }),
    );
  }

  async deleteLink(repo: RepositoryRef, kind: LinkKind, digest: string): Promise<void> {
    await this.deleteKey(this.keys.link(repo, kind, digest));
  }

  async getState(name: string): Promise<Buffer | undefined> {
    return (await this.get(this.keys.state(checkStateName(name))))?.bytes;
  }

  async putState(name: string, bytes: Buffer): Promise<void> {
    await this.client.send(
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: this.keys.state(checkStateName(name)),
        Body: bytes,
        ContentType: 'application/octet-stream',
      }),
    );
  }

  async listState(prefix: string): Promise<string[]> {
    const names: string[] = [];
    for await (const object of this.listObjects(this.keys.state(checkStatePrefix(prefix)))) {
      if (object.Key) names.push(object.Key.slice(this.keys.states.length));
    }
    return names.sort();
  }

  async deleteState(name: string): Promise<void> {
    await this.deleteKey(this.keys.state(checkStateName(name)));
  }

  async blobUrl(digest: string, expiresInSeconds: number): Promise<string | undefined> {
    const key = this.keys.blob(digest);
    if (!(await this.head(key))) return undefined;
    const expiresIn = Math.max(1, Math.min(Math.floor(expiresInSeconds), MAX_PRESIGN_SECONDS));
    return getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key: key }), { expiresIn });
  }

  async checkWritable(): Promise<void> {
    const key = `${this.keys.health}${hostname()}-${process.pid}-${randomBytes(6).toString('hex')}`;
    await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: 'ok', ContentType: 'text/plain' }));
    await this.deleteKey(key);
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  /** Every object under a key prefix, page by page. */
  private async *listObjects(prefix: string): AsyncIterable<_Object> {
    let token: string | undefined;
    do {
      const page = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token }));
      yield* page.Contents ?? [];
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  private async head(key: string): Promise<HeadObjectCommandOutput | undefined> {
    try {
      return await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  /** A small object, read whole. */
  private async get(
    key: string,
  ): Promise<{ bytes: Buffer; contentType?: string; metadata?: Record<string, string>; lastModified?: Date } | undefined> {
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      if (!res.Body) throw new Error(`S3 GetObject returned no body for ${key}`);
      const bytes = Buffer.from(await res.Body.transformToByteArray());
      return { bytes, contentType: res.ContentType, metadata: res.Metadata, lastModified: res.LastModified };
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  private async deleteKey(key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
  }

  /** When a blob too big for CopyObject was last touched, from its side object. */
  private async sideTouchTime(digest: string): Promise<Date | undefined> {
    const head = await this.head(this.keys.blobMeta(digest));
    if (!head) return undefined;
    return latest(head.LastModified, parseTime(head.Metadata?.[META_VERIFIED_AT]));
  }
}

function parseTime(value: string | undefined): Date | undefined {
  if (!value) return undefined;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? undefined : d;
}

function latest(a: Date | undefined, b: Date | undefined): Date | undefined {
  if (!a) return b;
  if (!b) return a;
  return a.getTime() >= b.getTime() ? a : b;
}

/** CopySource is `bucket/key`, URL-encoded per segment. */
function encodeKey(key: string): string {
  return key.split('/').map(encodeURIComponent).join('/');
}
