import { PassThrough } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { BlobWriter } from '../storage.js';

export interface BlobUploadParams {
  client: S3Client;
  bucket: string;
  key: string;
  partSizeBytes: number;
  queueSize: number;
}

type Outcome = { ok: true } | { ok: false; error: unknown };

/** Internal buffer of the stream between write() and the uploader; parts are gathered by lib-storage. */
const STREAM_HIGH_WATER_MARK = 1024 * 1024;

/**
 * A BlobWriter over a lib-storage Upload, started at once and fed by a PassThrough stream.
 *
 * Visibility: lib-storage collects the stream into parts. A blob that fits in one part becomes one
 * PutObject, sent only when the stream ends (commit); a bigger one is a multipart upload whose parts
 * go out while writing, but S3 shows the object only after CompleteMultipartUpload, which lib-storage
 * sends after the stream ended. So nothing is visible before commit(), and on S3 commit is atomic.
 *
 * Abort: the stream is destroyed with an error; lib-storage's uploaders stop, and with
 * leavePartsOnError false it sends AbortMultipartUpload before done() settles. abort() awaits that,
 * so when it returns no multipart upload is pending (unless the AbortMultipartUpload request itself
 * failed, e.g. S3 is down: the parts then stay until init() or a bucket lifecycle rule removes them).
 * Upload.abort() is not used for this: it makes done() reject at once while the clean-up goes on
 * unawaited in the background.
 */
export class S3BlobUpload implements BlobWriter {
  private readonly stream = new PassThrough({ highWaterMark: STREAM_HIGH_WATER_MARK });
  private readonly upload: Upload;
  private readonly outcome: Promise<Outcome>;
  private state: 'open' | 'committing' | 'committed' | 'aborted' | 'failed' = 'open';
  private failure: { error: unknown } | undefined;
  private readonly failureWaiters = new Set<(error: unknown) => void>();

  constructor(params: BlobUploadParams) {
    this.upload = new Upload({
      client: params.client,
      params: {
        Bucket: params.bucket,
        Key: params.key,
        Body: this.stream,
        ContentType: 'application/octet-stream',
      },
      partSize: params.partSizeBytes,
      queueSize: params.queueSize,
      leavePartsOnError: false,
    });
    this.outcome = this.upload.done().then(
      (): Outcome => ({ ok: true }),
      (error: unknown): Outcome => {
        // The upload failed before commit (S3 down, part rejected): stop writers waiting for 'drain',
        // which would otherwise never come.
        this.failure ??= { error };
        for (const waiter of this.failureWaiters) waiter(error);
        this.failureWaiters.clear();
        return { ok: false, error };
      },
    );
    // An error on the stream is reported through the upload; never as an unhandled 'error' event.
    this.stream.on('error', () => undefined);
  }

  async write(chunk: Buffer): Promise<void> {
    if (this.state !== 'open') throw new Error(`blob writer is ${this.state}`);
    if (this.failure) throw this.failure.error;
    // Copied: the stream and lib-storage keep references until a part is assembled, and the caller
    // may reuse its buffer once write() resolves.
    if (this.stream.write(Buffer.from(chunk))) return;
    await new Promise<void>((resolve, reject) => {
      const onDrain = () => {
        this.failureWaiters.delete(onFailure);
        resolve();
      };
      const onFailure = (error: unknown) => {
        this.stream.off('drain', onDrain);
        reject(error);
      };
      this.stream.once('drain', onDrain);
      this.failureWaiters.add(onFailure);
    });
  }

  async commit(): Promise<void> {
    if (this.state !== 'open') throw new Error(`blob writer is ${this.state}`);
    this.state = 'committing';
    this.stream.end();
    const outcome = await this.outcome;
    if (!outcome.ok) {
      this.state = 'failed';
      throw outcome.error;
    }
    this.state = 'committed';
  }

  async abort(): Promise<void> {
    if (this.state === 'open') {
      this.state = 'aborted';
      this.stream.destroy(Object.assign(new Error('blob write aborted'), { name: 'AbortError' }));
    }
    // Whatever the state, wait until the upload settled (and cleaned up after itself); abort never throws.
    // After a successful commit the blob stays, as with the filesystem backend.
    await this.outcome;
  }
}
