import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import type { ResolvedS3Options } from './options.js';

/** The S3Client for resolved options. */
export function createS3Client(options: ResolvedS3Options): S3Client {
  const config: S3ClientConfig = {
    region: options.region,
    forcePathStyle: options.forcePathStyle,
    requestHandler: {
      connectionTimeout: Math.min(options.requestTimeoutMs, 10_000),
      // Until the response headers; without throwOnRequestTimeout the SDK only logs a warning.
      requestTimeout: options.requestTimeoutMs,
      throwOnRequestTimeout: true,
      // Silence on the socket, also while a response body streams.
      socketTimeout: options.requestTimeoutMs,
    },
  };
  if (options.credentials) config.credentials = options.credentials;
  if (options.endpoint) {
    config.endpoint = options.endpoint;
    // S3-compatible servers (MinIO, Ceph, s3rver, R2...) often reject or mishandle the newer default
    // CRC checksum headers and trailers; ask for checksums only where the API requires them.
    config.requestChecksumCalculation = 'WHEN_REQUIRED';
    config.responseChecksumValidation = 'WHEN_REQUIRED';
  } else {
    // On AWS, follow a bucket to its region when the configured one is wrong.
    config.followRegionRedirects = true;
  }
  return new S3Client(config);
}
