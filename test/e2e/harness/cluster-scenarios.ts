/**
 * The cluster scenarios of issue #15, run by test/e2e/cluster-s3.test.ts (three replicas sharing one
 * s3rver bucket) and test/e2e/cluster-filesystem.test.ts (one root each): herds of concurrent GETs spread
 * over three real mirror processes in front of Debian's docker-registry, the owner killed mid-herd, and
 * what the upstream's access log and the storage show afterwards.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { ListObjectsV2Command, GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import type { Test } from 'tap';
import { clusterKeys, rendezvousOwner } from '../../../src/cluster/rendezvous.js';
import { listFiles } from '../../helpers/files.js';
import type { S3TestServer } from '../../helpers/s3-server.js';
import type { ClusterReplica, MirrorCluster } from './cluster.js';
import type { DockerRegistry } from './registry.js';

export const MiB = 1024 * 1024;
export const OCI_ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json';

export function upstreamConfig(registry: DockerRegistry): string {
  return `- namespace: "${registry.host}"\n  host: "${registry.host}"\n  tls: false\n`;
}

/** What one client got: the status, and for a 200 the SHA-256 of the whole body; `error` when the transfer broke. */
export interface Got {
  replica: number;
  status: number;
  bytes: number;
  digest: string | undefined;
  error: string | undefined;
  ms: number;
}

/** GETs a URL and hashes the body as it arrives (nothing is buffered); `onBytes` sees the running count. */
export async function getAndHash(url: string, replica: number, onBytes?: (n: number) => void, accept?: string): Promise<Got> {
  const t0 = Date.now();
  let status = 0;
  let bytes = 0;
  const hash = createHash('sha256');
  try {
    const res = await fetch(url, accept ? { headers: { accept } } : {});
    status = res.status;
    if (!res.body) return { replica, status, bytes, digest: undefined, error: undefined, ms: Date.now() - t0 };
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      hash.update(chunk);
      bytes += chunk.length;
      onBytes?.(bytes);
    }
    return { replica, status, bytes, digest: `sha256:${hash.digest('hex')}`, error: undefined, ms: Date.now() - t0 };
  } catch (e) {
    return { replica, status, bytes, digest: undefined, error: (e as Error).message, ms: Date.now() - t0 };
  }
}

export function blobUrl(r: ClusterReplica, registry: DockerRegistry, repo: string, digest: string): string {
  return `${r.url}/v2/${repo}/blobs/${digest}?ns=${registry.host}`;
}

/** The replica that owns `key` among the running ones (every replica computes the same). */
export function ownerOf(cluster: MirrorCluster, key: string): ClusterReplica {
  const urls = cluster.running().map((r) => r.url);
  const owner = rendezvousOwner(key, urls);
  return cluster.replicas.find((r) => r.url === owner) as ClusterReplica;
}

/** A random blob of `size` bytes (random: incompressible, no dedup anywhere on the way). */
export function bigBlob(size: number): Buffer {
  return randomBytes(size);
}

/** Upstream GETs of a blob (any status) in the registry's access log. */
export const blobGets = (registry: DockerRegistry, digest: string): number => registry.blobGets(digest);

/** Upstream GETs of manifests of a repository (by tag or digest), any status. */
export function manifestGets(registry: DockerRegistry, repo: string): number {
  return registry.accessLog().filter((e) => e.method === 'GET' && e.path.startsWith(`/v2/${repo}/manifests/`)).length;
}

/** Every request for a repository in the upstream's access log since `mark` entries. */
export function upstreamRequestsSince(registry: DockerRegistry, mark: number, repo: string): string[] {
  return registry
    .accessLog()
    .slice(mark)
    .filter((e) => e.path.startsWith(`/v2/${repo}/`))
    .map((e) => `${e.method} ${e.path} ${e.status}`);
}

async function hashFile(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return `sha256:${h.digest('hex')}`;
}

/** Filesystem mode: the blob files under a replica's root, each with whether it hashes to its name. */
export async function storedBlobsFs(root: string): Promise<Array<{ digest: string; intact: boolean }>> {
  const result = [];
  for (const f of await listFiles(join(root, 'blobs'))) {
    const digest = `sha256:${f.split('/').pop() ?? ''}`;
    result.push({ digest, intact: (await hashFile(f)) === digest });
  }
  return result;
}

/** Files left in a replica's tmp/ (in-progress writes). */
export async function tempFilesFs(root: string): Promise<string[]> {
  return listFiles(join(root, 'tmp'));
}

export function s3Inspector(s3: S3TestServer): S3Client {
  return new S3Client({
    region: 'us-east-1',
    endpoint: s3.endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
  });
}

/** S3 mode: the blob objects in the bucket, each with whether it hashes to its key. */
export async function storedBlobsS3(s3: S3TestServer, client: S3Client): Promise<Array<{ digest: string; intact: boolean }>> {
  const listed = await client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: 'blobs/' }));
  const result = [];
  for (const o of listed.Contents ?? []) {
    const key = o.Key ?? '';
    const [, alg, hex] = key.split('/');
    const digest = `${alg}:${hex}`;
    const got = await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }));
    const h = createHash('sha256');
    for await (const c of got.Body as AsyncIterable<Uint8Array>) h.update(c);
    result.push({ digest, intact: `sha256:${h.digest('hex')}` === digest });
  }
  return result;
}

export const s3BlobKey = (digest: string): string => `blobs/${digest.replace(':', '/')}`;

/** Polls until `check` holds or `ms` pass. */
export async function until(check: () => boolean | Promise<boolean>, ms: number, stepMs = 100): Promise<boolean> {
  const end = Date.now() + ms;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** Asserts every client of a herd got the whole blob, verified. */
export function assertAllVerified(t: Test, got: Got[], digest: string, size: number): void {
  const bad = got.filter((g) => g.status !== 200 || g.digest !== digest || g.bytes !== size);
  t.same(
    bad.map((g) => ({ replica: g.replica, status: g.status, bytes: g.bytes, error: g.error })),
    [],
    `all ${got.length} responses are 200 and hash to the digest`,
  );
}

export { clusterKeys };
