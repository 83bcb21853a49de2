import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile, rm, stat, utimes, access, constants } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type {
  BlobListing,
  BlobStat,
  BlobWriter,
  ByteRange,
  RepositoryRef,
  Storage,
  StoredManifest,
  TagRecord,
} from '../storage.js';
import { writeFileAtomic, tempPath } from './atomic-file.js';
import { FilesystemBlobWriter } from './blob-writer.js';
import { FilesystemPaths } from './paths.js';

interface ManifestHeader {
  mediaType: string;
  fetchedAt: string;
}

/** The cache on a local filesystem: content-addressed files, written by temp + rename. */
export class FilesystemStorage implements Storage {
  readonly kind = 'filesystem';
  readonly paths: FilesystemPaths;

  constructor(root: string) {
    this.paths = new FilesystemPaths(root);
  }

  async init(): Promise<void> {
    await mkdir(this.paths.root, { recursive: true });
    // Whatever is in tmp/ was being written when a previous process died: never visible, safe to drop.
    await rm(this.paths.tmp, { recursive: true, force: true });
    for (const dir of [this.paths.tmp, this.paths.blobs, this.paths.manifests, this.paths.repositories]) {
      await mkdir(dir, { recursive: true });
    }
  }

  async statBlob(digest: string): Promise<BlobStat | undefined> {
    try {
      const s = await stat(this.paths.blob(digest));
      return { size: s.size, modified: s.mtime };
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  async readBlob(digest: string, range?: ByteRange): Promise<Readable | undefined> {
    const path = this.paths.blob(digest);
    return new Promise<Readable | undefined>((resolve, reject) => {
      const stream = createReadStream(path, {
        highWaterMark: 256 * 1024,
        ...(range ? { start: range.start, end: range.end } : {}),
      });
      const onError = (e: Error) => (isNotFound(e) ? resolve(undefined) : reject(e));
      stream.once('error', onError);
      stream.once('open', () => {
        stream.off('error', onError);
        resolve(stream);
      });
    });
  }

  async createBlobWriter(digest: string): Promise<BlobWriter> {
    return FilesystemBlobWriter.create(this.paths.tmp, this.paths.blob(digest));
  }

  async deleteBlob(digest: string): Promise<void> {
    await rm(this.paths.blob(digest), { force: true });
  }

  async touchBlob(digest: string): Promise<void> {
    const now = new Date();
    try {
      await utimes(this.paths.blob(digest), now, now);
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
  }

  async *listBlobs(): AsyncIterable<BlobListing> {
    for (const algorithm of await listDir(this.paths.blobs)) {
      for (const prefix of await listDir(join(this.paths.blobs, algorithm))) {
        for (const hex of await listDir(join(this.paths.blobs, algorithm, prefix))) {
          const digest = `${algorithm}:${hex}`;
          const s = await this.statBlob(digest).catch(() => undefined);
          if (s) yield { digest, size: s.size, modified: s.modified };
        }
      }
    }
  }

  async getManifest(digest: string): Promise<StoredManifest | undefined> {
    let data: Buffer;
    try {
      data = await readFile(this.paths.manifest(digest));
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
    const nl = data.indexOf(0x0a);
    if (nl < 0) return undefined;
    const header = JSON.parse(data.subarray(0, nl).toString('utf8')) as ManifestHeader;
    return { mediaType: header.mediaType, fetchedAt: new Date(header.fetchedAt), bytes: data.subarray(nl + 1) };
  }

  async putManifest(digest: string, manifest: StoredManifest): Promise<void> {
    const header: ManifestHeader = { mediaType: manifest.mediaType, fetchedAt: manifest.fetchedAt.toISOString() };
    const data = Buffer.concat([Buffer.from(`${JSON.stringify(header)}\n`), manifest.bytes]);
    await writeFileAtomic(this.paths.tmp, this.paths.manifest(digest), data);
  }

  async deleteManifest(digest: string): Promise<void> {
    await rm(this.paths.manifest(digest), { force: true });
  }

  async getTag(repo: RepositoryRef, tag: string): Promise<TagRecord | undefined> {
    let text: string;
    try {
      text = await readFile(this.paths.tag(repo, tag), 'utf8');
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
    const r = JSON.parse(text) as Omit<TagRecord, 'checkedAt'> & { checkedAt: string };
    return { ...r, checkedAt: new Date(r.checkedAt) };
  }

  async putTag(repo: RepositoryRef, tag: string, record: TagRecord): Promise<void> {
    await writeFileAtomic(this.paths.tmp, this.paths.tag(repo, tag), JSON.stringify({ ...record, checkedAt: record.checkedAt.toISOString() }));
  }

  async listTags(repo: RepositoryRef): Promise<string[]> {
    return (await listDir(this.paths.tagsDir(repo))).sort();
  }

  async checkWritable(): Promise<void> {
    await access(this.paths.root, constants.W_OK);
    const probe = tempPath(this.paths.tmp);
    await writeFileAtomic(this.paths.tmp, probe + '.ready', 'ok');
    await rm(probe + '.ready', { force: true });
  }

  async close(): Promise<void> {
    // Nothing held open between requests.
  }
}

async function listDir(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (e) {
    if (isNotFound(e)) return [];
    throw e;
  }
}

function isNotFound(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}
