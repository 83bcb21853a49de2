import type { BlobWriter } from '../../storage/storage.js';

/** How much of the spool the upload reads at a time (one reused buffer per upload). */
const UPLOAD_READ_BYTES = 1024 * 1024;

/** What the upload needs of the spool it follows (SpoolFile). */
export interface UploadedSpool {
  /** Bytes in the spool so far. */
  readonly written: number;
  /** Every byte is in and the download verified them: the upload may commit. */
  readonly sealed: boolean;
  /** Set when the spool will never be complete (the download failed, or the disk refused a write). */
  readonly abandoned: Error | undefined;
  /** Reads written bytes at `position` into `into`. */
  read(position: number, length: number, into: Buffer): Promise<Buffer>;
  /** Resolves at the spool's next change (bytes written, sealed or abandoned). */
  readonly changed: { next(): Promise<void> };
}

/**
 * Copies a spool to a remote storage (S3) behind the download, through one reused buffer, and commits
 * only once the spool is sealed, i.e. after the download's digest verdict. A slow or hanging store never
 * holds clients back: they read the spool, not the upload. Rejects, after aborting the writer, when the
 * spool is abandoned (with the abandon reason) or the store fails.
 */
export async function uploadSpool(spool: UploadedSpool, writer: BlobWriter): Promise<void> {
  const buf = Buffer.allocUnsafe(UPLOAD_READ_BYTES);
  let pos = 0;
  try {
    for (;;) {
      const abandoned = spool.abandoned;
      if (abandoned) throw abandoned;
      if (pos < spool.written) {
        const chunk = await spool.read(pos, Math.min(buf.length, spool.written - pos), buf);
        if (chunk.length === 0) throw new Error('spool ended early');
        await writer.write(chunk);
        pos += chunk.length;
        continue;
      }
      if (spool.sealed) break;
      await spool.changed.next();
    }
    await writer.commit();
  } catch (e) {
    await writer.abort().catch(() => undefined);
    throw e;
  }
}
