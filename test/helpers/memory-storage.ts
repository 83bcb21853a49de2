/**
 * A Storage held in memory, for unit tests of the proxy core: no files, no sockets. Its blob writers
 * have no local file (like S3), so a download spools to a file of its own and uploads behind itself.
 * Tests can watch and steer the writers (`writers`, `writerHooks`).
 */
import { open, readFile, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
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
} from '../../src/storage/storage.js';

export interface WriterHooks {
  /** Awaited before each write: a slow or hanging store. */
  beforeWrite?: () => Promise<void>;
  /** Thrown by commit. */
  commitError?: Error;
}

export class MemoryBlobWriter implements BlobWriter {
  readonly chunks: Buffer[] = [];
  state: 'open' | 'committed' | 'aborted' = 'open';

  constructor(
    private readonly digest: string,
    private readonly store: MemoryStorage,
    private readonly hooks: WriterHooks,
  ) {}

  async write(chunk: Buffer): Promise<void> {
    await this.hooks.beforeWrite?.();
    if (this.state !== 'open') throw new Error(`write after ${this.state}`);
    // The caller may reuse the chunk once this resolves: keep a copy.
    this.chunks.push(Buffer.from(chunk));
  }

  async commit(): Promise<void> {
    if (this.state !== 'open') throw new Error(`commit after ${this.state}`);
    if (this.hooks.commitError) throw this.hooks.commitError;
    this.state = 'committed';
    this.store.blobs.set(this.digest, { bytes: Buffer.concat(this.chunks), modified: new Date() });
  }

  async abort(): Promise<void> {
    if (this.state === 'open') this.state = 'aborted';
  }
}

/**
 * A writer with a local file, as the filesystem backend's: the download uses the file as its spool and
 * commits the writer itself. Commit copies the file into the storage's memory.
 */
export class LocalFileWriter implements BlobWriter {
  state: 'open' | 'committed' | 'aborted' = 'open';
  writes = 0;
  private size = 0;

  constructor(
    readonly localPath: string,
    private readonly fd: FileHandle,
    private readonly digest: string,
    private readonly store: MemoryStorage,
    private readonly hooks: WriterHooks,
  ) {}

  async write(chunk: Buffer): Promise<void> {
    await this.writev([chunk]);
  }

  async writev(chunks: Buffer[]): Promise<void> {
    await this.hooks.beforeWrite?.();
    if (this.state !== 'open') throw new Error(`write after ${this.state}`);
    this.writes++;
    const { bytesWritten } = await this.fd.writev(chunks, this.size);
    this.size += bytesWritten;
  }

  async commit(): Promise<void> {
    if (this.state !== 'open') throw new Error(`commit after ${this.state}`);
    if (this.hooks.commitError) throw this.hooks.commitError;
    this.state = 'committed';
    await this.fd.close();
    this.store.blobs.set(this.digest, { bytes: await readFile(this.localPath), modified: new Date() });
    await rm(this.localPath, { force: true });
  }

  async abort(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'aborted';
    await this.fd.close().catch(() => undefined);
    await rm(this.localPath, { force: true });
  }
}

export class MemoryStorage implements Storage {
  readonly kind = 'memory';
  readonly blobs = new Map<string, { bytes: Buffer; modified: Date }>();
  readonly manifests = new Map<string, StoredManifest>();
  readonly tags = new Map<string, TagRecord>();
  readonly links = new Map<string, Date>();
  readonly state = new Map<string, Buffer>();
  readonly writers: (MemoryBlobWriter | LocalFileWriter)[] = [];
  /** When set, blob writers write a file in this directory that the download uses as its spool (filesystem-like). */
  localWriterDir: string | undefined;
  private localFiles = 0;
  writerHooks: WriterHooks = {};
  /** Thrown by createBlobWriter (a store that cannot take blobs). */
  createWriterError: Error | undefined;
  readonly calls = { getTag: 0, getManifest: 0, putTag: 0 };

  async init(): Promise<void> {}

  async statBlob(digest: string): Promise<BlobStat | undefined> {
    const b = this.blobs.get(digest);
    return b && { size: b.bytes.length, modified: b.modified };
  }

  async readBlob(digest: string, range?: ByteRange): Promise<Readable | undefined> {
    const b = this.blobs.get(digest);
    if (!b) return undefined;
    return Readable.from([range ? b.bytes.subarray(range.start, range.end + 1) : b.bytes]);
  }

  async createBlobWriter(digest: string): Promise<BlobWriter> {
    if (this.createWriterError) throw this.createWriterError;
    if (this.localWriterDir) {
      const path = join(this.localWriterDir, `writer-${++this.localFiles}.part`);
      const w = new LocalFileWriter(path, await open(path, 'wx'), digest, this, this.writerHooks);
      this.writers.push(w);
      return w;
    }
    const w = new MemoryBlobWriter(digest, this, this.writerHooks);
    this.writers.push(w);
    return w;
  }

  async deleteBlob(digest: string): Promise<void> {
    this.blobs.delete(digest);
  }

  async touchBlob(digest: string): Promise<void> {
    const b = this.blobs.get(digest);
    if (b) b.modified = new Date();
  }

  async *listBlobs(): AsyncIterable<BlobListing> {
    for (const [digest, b] of this.blobs) yield { digest, size: b.bytes.length, modified: b.modified };
  }

  async getManifest(digest: string): Promise<StoredManifest | undefined> {
    this.calls.getManifest++;
    return this.manifests.get(digest);
  }

  async putManifest(digest: string, manifest: StoredManifest): Promise<void> {
    this.manifests.set(digest, manifest);
  }

  async deleteManifest(digest: string): Promise<void> {
    this.manifests.delete(digest);
  }

  async getTag(repo: RepositoryRef, tag: string): Promise<TagRecord | undefined> {
    this.calls.getTag++;
    return this.tags.get(`${repo.namespace}/${repo.repository}:${tag}`);
  }

  async putTag(repo: RepositoryRef, tag: string, record: TagRecord): Promise<void> {
    this.calls.putTag++;
    this.tags.set(`${repo.namespace}/${repo.repository}:${tag}`, record);
  }

  async listTags(repo: RepositoryRef): Promise<string[]> {
    const prefix = `${repo.namespace}/${repo.repository}:`;
    return [...this.tags.keys()]
      .filter((k) => k.startsWith(prefix))
      .map((k) => k.slice(prefix.length))
      .sort();
  }

  async deleteTag(repo: RepositoryRef, tag: string): Promise<void> {
    this.tags.delete(`${repo.namespace}/${repo.repository}:${tag}`);
  }

  async *listRepositories(): AsyncIterable<RepositoryRef> {
    const seen = new Set<string>();
    for (const key of this.tags.keys()) {
      const name = key.slice(0, key.lastIndexOf(':'));
      if (seen.has(name)) continue;
      seen.add(name);
      const slash = name.indexOf('/');
      yield { namespace: name.slice(0, slash), repository: name.slice(slash + 1) };
    }
  }

  async *listManifests(): AsyncIterable<ManifestListing> {
    for (const [digest, m] of this.manifests) yield { digest, size: m.bytes.length, fetchedAt: m.fetchedAt };
  }

  async getLink(repo: RepositoryRef, kind: LinkKind, digest: string): Promise<Date | undefined> {
    return this.links.get(linkKey(repo, kind, digest));
  }

  async putLink(repo: RepositoryRef, kind: LinkKind, digest: string, linkedAt: Date): Promise<void> {
    this.links.set(linkKey(repo, kind, digest), linkedAt);
  }

  async deleteLink(repo: RepositoryRef, kind: LinkKind, digest: string): Promise<void> {
    this.links.delete(linkKey(repo, kind, digest));
  }

  async getState(name: string): Promise<Buffer | undefined> {
    return this.state.get(name);
  }

  async putState(name: string, bytes: Buffer): Promise<void> {
    this.state.set(name, bytes);
  }

  async listState(prefix: string): Promise<string[]> {
    return [...this.state.keys()].filter((k) => k.startsWith(prefix)).sort();
  }

  async deleteState(name: string): Promise<void> {
    this.state.delete(name);
  }

  async checkWritable(): Promise<void> {}
  async close(): Promise<void> {}
}

function linkKey(repo: RepositoryRef, kind: LinkKind, digest: string): string {
  return `${repo.namespace}/${repo.repository}/${kind}/${digest}`;
}
