/** The S3 backend: `createS3Storage(options)`. */
export { createS3Storage, S3Storage, STALE_UPLOAD_AGE_MS } from './s3-storage.js';
export { S3Keys } from './keys.js';
export { resolveS3Options, normalizeEndpoint, normalizePrefix } from './options.js';
export type { S3StorageOptions, S3StorageLogger, ResolvedS3Options } from './options.js';
