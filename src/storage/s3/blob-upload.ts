import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  UploadPartCommand,
  type CompletedPart,
  type CreateMultipartUploadCommandInput,
  type S3Client,
} from '@aws-sdk/client-s3';
import type { BlobWriter } from '../storage.js';

export interface BlobUploadParams {
  client: S3Client;
  bucket: string;
  key: string;
  partSizeBytes: number;
  queueSize: number;
}

const CONTENT_TYPE = 'application/octet-stream';
/** S3 numbers parts 1 to 10,000: with 8 MiB parts a blob may be up to 78 GiB. */
const MAX_PARTS = 10_000;
/** The first buffer of an upload starts this small and doubles up to a part, so small blobs stay small. */
const INITIAL_BUFFER_BYTES = 256 * 1024;

/**
 * A BlobWriter that uploads to S3 as it is written, holding at most `queueSize + 1` part buffers:
 * `queueSize` parts being uploaded and one being filled. Written bytes are copied into the part
 * being filled (so the caller may reuse its chunk once write() resolves); a full part is sent with
 * UploadPart and its buffer reused for a later part once S3 answered. write() waits while
 * `queueSize` parts are in flight (backpressure towards the download).
 *
 * Why not lib-storage's Upload: it collects a stream into parts with Buffer.concat, so every part
 * allocates a fresh part-sized buffer on top of the chunks it copies, and all of that is garbage the
 * next moment. Streaming a 200 MiB blob that way left tens of MiB of dead buffers waiting for V8's
 * external-memory GC; reusing a fixed set of buffers keeps the process's memory close to
 * partSize * (queueSize + 1) per upload.
 *
 * Visibility: a blob that fits in one part becomes one PutObject, sent at commit; a bigger one is a
 * multipart upload whose parts go out while writing, but S3 shows the object only after
 * CompleteMultipartUpload, sent at commit. So nothing is visible before commit(), and commit is atomic.
 *
 * Failure and abort: when a request fails (after the SDK's retries), pending and later writes reject,
 * and the multipart upload is aborted (AbortMultipartUpload) once the parts in flight settled. abort()
 * waits for that clean-up, so when it returns no multipart upload is pending (unless the
 * AbortMultipartUpload request itself failed, e.g. S3 is down: the parts then stay until init() or
 * a bucket lifecycle rule removes them).
 *
 * Checksums follow lib-storage: when the client computes checksums WHEN_SUPPORTED (the AWS default),
 * the upload is created with ChecksumAlgorithm CRC32, the SDK adds each part's CRC32, and
 * CompleteMultipartUpload lists the part checksums S3 returned.
 */
export class S3BlobUpload implements BlobWriter {
  private state: 'open' | 'committing' | 'committed' | 'aborted' | 'failed' = 'open';
  private failure: { error: unknown } | undefined;

  /** The part being filled, and how much of it is. */
  private current: Buffer | undefined;
  private filled = 0;
  /** Part-sized buffers free for reuse. */
  private readonly spare: Buffer[] = [];

  private partCount = 0;
  private readonly parts: CompletedPart[] = [];
  /** Part uploads in flight; they never reject (a failure is recorded in `failure`). */
  private readonly inflight = new Set<Promise<void>>();
  private uploadId: string | undefined;
  private creating: Promise<string> | undefined;
  private cleanup: Promise<void> | undefined;

  private readonly partSize: number;

  constructor(private readonly params: BlobUploadParams) {
    this.partSize = params.partSizeBytes;
  }

  async write(chunk: Buffer): Promise<void> {
    if (this.state !== 'open') throw new Error(`blob writer is ${this.state}`);
    this.throwIfFailed();
    let offset = 0;
    while (offset < chunk.length) {
      const buffer = await this.room();
      const copied = chunk.copy(buffer, this.filled, offset);
      offset += copied;
      this.filled += copied;
    }
  }

  async commit(): Promise<void> {
    if (this.state !== 'open') throw new Error(`blob writer is ${this.state}`);
    this.state = 'committing';
    try {
      this.throwIfFailed();
      if (this.partCount === 0) {
        // It fits in one part: one PutObject.
        const body = this.current ? this.current.subarray(0, this.filled) : Buffer.alloc(0);
        await this.params.client.send(
          new PutObjectCommand({ Bucket: this.params.bucket, Key: this.params.key, Body: body, ContentLength: body.length, ContentType: CONTENT_TYPE }),
        );
      } else {
        if (this.filled > 0) await this.sendCurrent();
        await this.settleInflight();
        this.throwIfFailed();
        const parts = [...this.parts].sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
        await this.params.client.send(
          new CompleteMultipartUploadCommand({
            Bucket: this.params.bucket,
            Key: this.params.key,
            UploadId: this.uploadId,
            MultipartUpload: { Parts: parts },
          }),
        );
      }
    } catch (e) {
      this.state = 'failed';
      this.fail(e);
      throw e;
    }
    this.state = 'committed';
    this.releaseBuffers();
  }

  async abort(): Promise<void> {
    if (this.state === 'open' || this.state === 'committing') this.state = 'aborted';
    // After a successful commit the blob stays, as with the filesystem backend.
    if (this.state === 'committed') return;
    await this.cleanUp();
  }

  /** The buffer to copy into, with room for at least one byte: sends a full part first. */
  private async room(): Promise<Buffer> {
    let buffer = this.current;
    if (buffer && this.filled === buffer.length && buffer.length < this.partSize) {
      // The first part grows by doubling until it reaches the part size.
      const bigger = Buffer.allocUnsafeSlow(Math.min(this.partSize, buffer.length * 2));
      buffer.copy(bigger, 0, 0, this.filled);
      buffer = this.current = bigger;
    }
    if (buffer && this.filled === this.partSize) {
      // A full part is sent only once more bytes come, so a blob of exactly one part is a PutObject.
      await this.sendCurrent();
      buffer = undefined;
    }
    if (!buffer) {
      buffer = this.spare.pop() ?? Buffer.allocUnsafeSlow(this.partCount === 0 ? Math.min(this.partSize, INITIAL_BUFFER_BYTES) : this.partSize);
      this.current = buffer;
      this.filled = 0;
    }
    return buffer;
  }

  /** Starts uploading the current buffer as the next part, after waiting for room in the queue. */
  private async sendCurrent(): Promise<void> {
    const buffer = this.current as Buffer;
    const length = this.filled;
    this.current = undefined;
    this.filled = 0;
    while (this.inflight.size >= this.params.queueSize && !this.failure) await Promise.race(this.inflight);
    if (this.state !== 'open' && this.state !== 'committing') throw new Error(`blob writer is ${this.state}`);
    this.throwIfFailed();
    if (this.partCount >= MAX_PARTS) {
      const error = new Error(`blob too big for S3 parts of ${this.partSize} bytes: more than ${MAX_PARTS} parts`);
      this.fail(error);
      throw error;
    }
    const partNumber = ++this.partCount;
    const task: Promise<void> = this.uploadPart(partNumber, buffer.subarray(0, length)).then(
      () => {
        this.inflight.delete(task);
        if (buffer.length === this.partSize && !this.failure && this.state !== 'aborted') this.spare.push(buffer);
      },
      (e: unknown) => {
        this.inflight.delete(task);
        this.fail(e);
      },
    );
    this.inflight.add(task);
  }

  private async uploadPart(partNumber: number, body: Buffer): Promise<void> {
    const uploadId = await this.createUpload();
    const res = await this.params.client.send(
      new UploadPartCommand({
        Bucket: this.params.bucket,
        Key: this.params.key,
        UploadId: uploadId,
        PartNumber: partNumber,
        Body: body,
        ContentLength: body.length,
      }),
    );
    if (!res.ETag) throw new Error(`S3 UploadPart ${partNumber} of ${this.params.key} returned no ETag`);
    this.parts.push({
      PartNumber: partNumber,
      ETag: res.ETag,
      ...(res.ChecksumCRC32 ? { ChecksumCRC32: res.ChecksumCRC32 } : {}),
      ...(res.ChecksumCRC32C ? { ChecksumCRC32C: res.ChecksumCRC32C } : {}),
      ...(res.ChecksumCRC64NVME ? { ChecksumCRC64NVME: res.ChecksumCRC64NVME } : {}),
      ...(res.ChecksumSHA1 ? { ChecksumSHA1: res.ChecksumSHA1 } : {}),
      ...(res.ChecksumSHA256 ? { ChecksumSHA256: res.ChecksumSHA256 } : {}),
    });
  }

  private createUpload(): Promise<string> {
    this.creating ??= (async () => {
      const input: CreateMultipartUploadCommandInput = { Bucket: this.params.bucket, Key: this.params.key, ContentType: CONTENT_TYPE };
      if ((await this.params.client.config.requestChecksumCalculation()) === 'WHEN_SUPPORTED') input.ChecksumAlgorithm = 'CRC32';
      const res = await this.params.client.send(new CreateMultipartUploadCommand(input));
      if (!res.UploadId) throw new Error(`S3 CreateMultipartUpload for ${this.params.key} returned no UploadId`);
      this.uploadId = res.UploadId;
      return res.UploadId;
    })();
    return this.creating;
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure.error;
  }

  /** Records the first failure and starts the clean-up. */
  private fail(error: unknown): void {
    this.failure ??= { error };
    void this.cleanUp();
  }

  /** Waits for the parts in flight, then aborts the multipart upload if one was created. Never rejects. */
  private cleanUp(): Promise<void> {
    this.cleanup ??= (async () => {
      await this.settleInflight();
      // A CreateMultipartUpload still on its way would leave an upload behind: wait for it too.
      const uploadId = this.creating ? await this.creating.catch(() => undefined) : this.uploadId;
      this.releaseBuffers();
      if (uploadId === undefined) return;
      await this.params.client
        .send(new AbortMultipartUploadCommand({ Bucket: this.params.bucket, Key: this.params.key, UploadId: uploadId }))
        .catch(() => undefined);
    })();
    return this.cleanup;
  }

  private async settleInflight(): Promise<void> {
    while (this.inflight.size > 0) await Promise.all(this.inflight);
  }

  private releaseBuffers(): void {
    this.current = undefined;
    this.filled = 0;
    this.spare.length = 0;
  }
}
