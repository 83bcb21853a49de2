/** Options of the S3 backend, and their defaults and checks. */

export const MIB = 1024 * 1024;
/** S3's smallest part size (every part but the last). */
export const MIN_PART_SIZE_BYTES = 5 * MIB;
/** S3's largest part size. */
export const MAX_PART_SIZE_BYTES = 5 * 1024 * MIB;
/** CopyObject copies at most 5 GiB in one request. */
export const COPY_OBJECT_MAX_BYTES = 5 * 1024 * MIB;

/** The subset of a pino logger the backend uses for best-effort housekeeping. */
export interface S3StorageLogger {
  warn(obj: Record<string, unknown>, msg: string): void;
  info?(obj: Record<string, unknown>, msg: string): void;
}

export interface S3StorageOptions {
  bucket: string;
  /** Default `us-east-1`. */
  region?: string;
  /** The `--host` flag: `http://127.0.0.1:4569`; without a scheme, https is assumed. Unset: AWS S3. */
  endpoint?: string;
  /** Without keys the SDK's default chain applies: env, shared config, IRSA web identity, instance profile. */
  accessKeyId?: string;
  secretAccessKey?: string;
  /** Prepended to every key; a `/` is added when missing (`cache` -> `cache/blobs/...`). Default ''. */
  prefix?: string;
  /** Path-style URLs (`host/bucket/key`); default true when `endpoint` is set, else false. */
  forcePathStyle?: boolean;
  /**
   * Multipart part size; default and minimum 5 MiB (S3's minimum), so a blob may be up to 48.8 GiB
   * (10,000 parts). lib-storage holds the part being collected, its Buffer.concat copy and the parts in
   * flight: about partSize * (queueSize + 2) per upload, plus garbage until V8 collects it.
   */
  partSizeBytes?: number;
  /** Parts of one blob uploaded at once; default 1. */
  queueSize?: number;
  /**
   * Limit for one request, from sending it until the response headers (so it includes uploading one
   * part), and for a connection that stays silent (also while a blob streams out). Default 60 s.
   * Failed requests are retried by the SDK (3 attempts), so an operation may take up to about 3x this.
   */
  requestTimeoutMs?: number;
  /** For warnings from housekeeping that must not fail start-up (stale upload cleanup). */
  logger?: S3StorageLogger;
  /**
   * Blobs up to this size are re-stamped by touchBlob with CopyObject onto themselves; larger ones
   * get a side object. Default and maximum 5 GiB (CopyObject's limit); lowered only by tests.
   */
  touchCopyMaxBytes?: number;
}

export interface ResolvedS3Options {
  bucket: string;
  region: string;
  endpoint: string | undefined;
  credentials: { accessKeyId: string; secretAccessKey: string } | undefined;
  prefix: string;
  forcePathStyle: boolean;
  partSizeBytes: number;
  queueSize: number;
  requestTimeoutMs: number;
  logger: S3StorageLogger | undefined;
  touchCopyMaxBytes: number;
}

export const DEFAULT_REGION = 'us-east-1';
// Measured with test/storage/s3-memory.test.ts (200 MiB pull, RSS growth min/median/max on a loaded 2-core
// machine): 5 MiB parts, one in flight 37/67/93 MiB (15 runs); 8 MiB parts 48/78/97 (6); 5 MiB parts, two in
// flight 59/72/96 (3). lib-storage allocates every part afresh (the chunks it collects, then their
// concatenation), so smaller parts mean less garbage waiting for V8 to collect it.
export const DEFAULT_PART_SIZE_BYTES = 5 * MIB;
// One part uploading while the next is collected: the upload runs behind the download (it never holds
// clients back), so more parallelism would only buy memory.
export const DEFAULT_QUEUE_SIZE = 1;
export const DEFAULT_REQUEST_TIMEOUT_MS = 60_000;

/** Applies defaults and refuses options S3 would reject later, with a message naming the option. */
export function resolveS3Options(options: S3StorageOptions): ResolvedS3Options {
  const bucket = options.bucket?.trim();
  if (!bucket) throw new Error('s3: a bucket name is required');

  const endpoint = options.endpoint === undefined || options.endpoint === '' ? undefined : normalizeEndpoint(options.endpoint);

  const { accessKeyId, secretAccessKey } = options;
  if (Boolean(accessKeyId) !== Boolean(secretAccessKey)) {
    throw new Error('s3: give both an access key id and a secret access key, or neither (to use the default credential chain)');
  }

  const partSizeBytes = options.partSizeBytes ?? DEFAULT_PART_SIZE_BYTES;
  if (!Number.isInteger(partSizeBytes) || partSizeBytes < MIN_PART_SIZE_BYTES || partSizeBytes > MAX_PART_SIZE_BYTES) {
    throw new Error(
      `s3: partSizeBytes must be an integer from ${MIN_PART_SIZE_BYTES} (5 MiB) to ${MAX_PART_SIZE_BYTES} (5 GiB), got ${partSizeBytes}`,
    );
  }
  const queueSize = options.queueSize ?? DEFAULT_QUEUE_SIZE;
  if (!Number.isInteger(queueSize) || queueSize < 1 || queueSize > 64) {
    throw new Error(`s3: queueSize must be an integer from 1 to 64, got ${queueSize}`);
  }
  const requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  if (!Number.isFinite(requestTimeoutMs) || requestTimeoutMs <= 0) {
    throw new Error(`s3: requestTimeoutMs must be a positive number, got ${requestTimeoutMs}`);
  }
  const touchCopyMaxBytes = Math.min(options.touchCopyMaxBytes ?? COPY_OBJECT_MAX_BYTES, COPY_OBJECT_MAX_BYTES);

  return {
    bucket,
    region: options.region || DEFAULT_REGION,
    endpoint,
    credentials: accessKeyId && secretAccessKey ? { accessKeyId, secretAccessKey } : undefined,
    prefix: normalizePrefix(options.prefix ?? ''),
    forcePathStyle: options.forcePathStyle ?? endpoint !== undefined,
    partSizeBytes,
    queueSize,
    requestTimeoutMs,
    logger: options.logger,
    touchCopyMaxBytes,
  };
}

/** `minio:9000` -> `https://minio:9000`; only http and https are accepted. */
export function normalizeEndpoint(endpoint: string): string {
  const withScheme = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//.test(endpoint) ? endpoint : `https://${endpoint}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new Error(`s3: endpoint ${JSON.stringify(endpoint)} is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new Error(`s3: endpoint ${JSON.stringify(endpoint)} must use http or https`);
  }
  // Keep what the user wrote (minus a trailing slash): the SDK joins paths itself.
  return withScheme.replace(/\/+$/, '');
}

/** Leading slashes dropped, a trailing slash added: `/cache` -> `cache/`, '' stays ''. */
export function normalizePrefix(prefix: string): string {
  const p = prefix.replace(/^\/+/, '');
  if (p === '') return '';
  if (p.includes('\0')) throw new Error('s3: the key prefix must not contain NUL');
  for (const segment of p.replace(/\/+$/, '').split('/')) {
    if (segment === '' || segment === '.' || segment === '..') {
      throw new Error(`s3: the key prefix ${JSON.stringify(prefix)} has an empty, '.' or '..' segment`);
    }
  }
  return p.endsWith('/') ? p : `${p}/`;
}
