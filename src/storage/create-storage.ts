import type { Storage } from './storage.js';
import type { S3StorageLogger } from './s3/options.js';
import { FilesystemStorage } from './filesystem/filesystem-storage.js';

export interface FilesystemStorageOptions {
  kind: 'filesystem';
  root: string;
}

export interface S3StorageSettings {
  kind: 's3';
  bucket: string;
  region: string;
  endpoint?: string | undefined;
  accessKeyId?: string | undefined;
  secretAccessKey?: string | undefined;
  prefix?: string | undefined;
  forcePathStyle?: boolean | undefined;
  /** Redirect clients to presigned URLs for cached blobs (a proxy policy, carried with the backend choice). */
  redirect?: boolean | undefined;
}

export type StorageOptions = FilesystemStorageOptions | S3StorageSettings;

/** Builds the configured backend; the S3 SDK is loaded only when S3 is used. */
export async function createStorage(options: StorageOptions, logger?: S3StorageLogger): Promise<Storage> {
  if (options.kind === 'filesystem') return new FilesystemStorage(options.root);
  const { createS3Storage } = await import('./s3/index.js');
  return createS3Storage({
    bucket: options.bucket,
    region: options.region,
    ...(options.endpoint ? { endpoint: options.endpoint } : {}),
    ...(options.accessKeyId ? { accessKeyId: options.accessKeyId } : {}),
    ...(options.secretAccessKey ? { secretAccessKey: options.secretAccessKey } : {}),
    ...(options.prefix ? { prefix: options.prefix } : {}),
    ...(options.forcePathStyle !== undefined ? { forcePathStyle: options.forcePathStyle } : {}),
    ...(logger ? { logger } : {}),
  });
}
