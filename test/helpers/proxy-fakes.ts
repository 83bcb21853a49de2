/**
 * Fakes for unit tests of the proxy services: a repository on an implicit upstream, and an upstream pool
 * whose one client answers from memory and counts the calls. No sockets.
 */
import { Readable } from 'node:stream';
import { pino } from 'pino';
import { implicitUpstream, loadMirrorConfig } from '../../src/config/upstreams.js';
import { OciError } from '../../src/oci/errors.js';
import { RepositoryLinks } from '../../src/proxy/links.js';
import type { ResolvedRepository } from '../../src/resolve/resolver.js';
import type { Storage } from '../../src/storage/storage.js';
import type { FetchedManifest, ManifestHead } from '../../src/upstream/upstream-client.js';
import type { UpstreamPool } from '../../src/upstream/upstream-pool.js';
import { sha256 } from '../fixtures/content.js';

export const silentLog = pino({ level: 'silent' });

export function testRepo(repository = 'library/app'): ResolvedRepository {
  return { namespace: 'test.local', repository, upstream: implicitUpstream('test.local', loadMirrorConfig()), source: 'default' };
}

export function testLinks(storage: Storage, now: () => number): RepositoryLinks {
  return new RepositoryLinks({ storage, log: silentLog, now });
}

/** An upstream held in memory. `body` may be replaced to serve other bytes than the blob's. */
export class FakeUpstream {
  readonly blobs = new Map<string, Buffer>();
  readonly manifests = new Map<string, { mediaType: string; bytes: Buffer }>();
  readonly tags = new Map<string, string>();
  readonly calls = { getBlob: 0, headBlob: 0, getManifest: 0, headManifest: 0 };
  /** Resolves each getBlob's answer only when released (to make requests overlap). */
  blobGate: Promise<void> | undefined;

  addBlob(bytes: Buffer): string {
    const digest = sha256(bytes);
    this.blobs.set(digest, bytes);
    return digest;
  }

  tag(tag: string, bytes: Buffer, mediaType = 'application/vnd.oci.image.manifest.v1+json'): string {
    const digest = sha256(bytes);
    this.manifests.set(digest, { mediaType, bytes });
    this.tags.set(tag, digest);
    return digest;
  }

  readonly pool = {
    client: () => ({
      getBlob: async (_repo: string, digest: string) => {
        this.calls.getBlob++;
        await this.blobGate;
        const bytes = this.blobs.get(digest);
        if (!bytes) throw new OciError('BLOB_UNKNOWN', 'blob unknown');
        return { size: bytes.length, body: Readable.from([bytes]) };
      },
      headBlob: async (_repo: string, digest: string) => {
        this.calls.headBlob++;
        const bytes = this.blobs.get(digest);
        return bytes && { size: bytes.length };
      },
      getManifest: async (_repo: string, reference: string): Promise<FetchedManifest> => {
        this.calls.getManifest++;
        const digest = this.tags.get(reference) ?? reference;
        const m = this.manifests.get(digest);
        if (!m) throw new OciError('MANIFEST_UNKNOWN', 'manifest unknown');
        return { digest, ...m };
      },
      headManifest: async (_repo: string, reference: string): Promise<ManifestHead> => {
        this.calls.headManifest++;
        const digest = this.tags.get(reference) ?? reference;
        const m = this.manifests.get(digest);
        if (!m) throw new OciError('MANIFEST_UNKNOWN', 'manifest unknown');
        return { digest, mediaType: m.mediaType, size: m.bytes.length };
      },
    }),
  };

  /** The fake as the services' option type; they call only client(). */
  get upstreams(): UpstreamPool {
    return this.pool as unknown as UpstreamPool;
  }
}
