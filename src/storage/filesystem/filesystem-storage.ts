import { open, mkdir, readdir, readFile, rm, rmdir, stat, utimes, access, constants } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import type { Readable } from 'node:stream';
import type {
  BlobListing,
  BlobStat,
  BlobWriter,
  ByteRange,
  InitOptions,
  LinkKind,
  ManifestListing,
  RepositoryRef,
  Storage,
  StoredManifest,
  TagRecord,
} from '../storage.js';
import { tempPath } from '../../fs/temp-path.js';
import { writeFileAtomic } from './atomic-file.js';
import { FilesystemBlobWriter } from './blob-writer.js';
import { FileRegionStream } from './file-region-stream.js';
import { FilesystemPaths } from './paths.js';
import { checkStateName, checkStatePrefix } from '../state-name.js';

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

  get localRoot(): string {
    return this.paths.root;
  }

  async init(options: InitOptions = {}): Promise<void> {
    await mkdir(this.paths.root, { recursive: true });
    // Whatever is in tmp/ was being written when a previous process died: never visible, safe to drop.
    // Not when shared: a running server writes there.
    if (!options.shared) await rm(this.paths.tmp, { recursive: true, force: true });
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
    let file: FileHandle;
    try {
      file = await open(this.paths.blob(digest), 'r');
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
    return range ? new FileRegionStream(file, range.start, range.end + 1) : new FileRegionStream(file, 0, Infinity);
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
    await writeFileAtomic(
      this.paths.tmp,
      this.paths.tag(repo, tag),
      JSON.stringify({ ...record, checkedAt: record.checkedAt.toISOString() }),
    );
  }

  async listTags(repo: RepositoryRef): Promise<string[]> {
    return (await listDir(this.paths.tagsDir(repo))).sort();
  }

  async deleteTag(repo: RepositoryRef, tag: string): Promise<void> {
    const file = this.paths.tag(repo, tag);
    await rm(file, { force: true });
    // Drop directories left empty (the repository's _tags/, then its parents up to repositories/), so
    // that listRepositories stays quick. rmdir refuses non-empty ones; a concurrent putTag that loses
    // its directory recreates it (atomic-file.ts publish).
    let dir = this.paths.tagsDir(repo);
    while (dir.startsWith(this.paths.repositories + sep)) {
      try {
        await rmdir(dir);
      } catch {
        return; // not empty (or gone): its parents are not empty either
      }
      dir = join(dir, '..');
    }
  }

  async *listRepositories(): AsyncIterable<RepositoryRef> {
    for (const namespace of (await listDir(this.paths.repositories)).sort()) {
      yield* this.repositoriesUnder(namespace, []);
    }
  }

  /** Depth-first walk; a directory holding a non-empty `_tags/` is a repository (no component starts with `_`). */
  private async *repositoriesUnder(namespace: string, components: string[]): AsyncIterable<RepositoryRef> {
    let dir: string;
    try {
      dir = this.paths.repositoryDir(namespace, ...components);
    } catch {
      return; // a name no repository can have
    }
    for (const entry of (await listDirEntries(dir)).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      if (!entry.isDirectory()) continue;
      if (entry.name === '_tags') {
        if (components.length > 0 && (await listDir(join(dir, '_tags'))).length > 0) {
          yield { namespace, repository: components.join('/') };
        }
        continue;
      }
      // `_links/` and any other `_` directory: a repository's own records, never a nested repository.
      if (entry.name.startsWith('_')) continue;
      yield* this.repositoriesUnder(namespace, [...components, entry.name]);
    }
  }

  async *listManifests(): AsyncIterable<ManifestListing> {
    for (const algorithm of await listDir(this.paths.manifests)) {
      for (const prefix of await listDir(join(this.paths.manifests, algorithm))) {
        for (const hex of await listDir(join(this.paths.manifests, algorithm, prefix))) {
          const digest = `${algorithm}:${hex}`;
          const m = await this.getManifest(digest).catch(() => undefined);
          if (m) yield { digest, size: m.bytes.length, fetchedAt: m.fetchedAt };
        }
      }
    }
  }

  async getLink(repo: RepositoryRef, kind: LinkKind, digest: string): Promise<Date | undefined> {
    let text: string;
    try {
      text = await readFile(this.paths.link(repo, kind, digest), 'utf8');
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
    const at = new Date(text.trim());
    // Unreadable (cannot happen with atomic writes, but a hand-edited cache might): no link, ask upstream.
    return Number.isNaN(at.getTime()) ? undefined : at;
  }

  async putLink(repo: RepositoryRef, kind: LinkKind, digest: string, linkedAt: Date): Promise<void> {
    await writeFileAtomic(this.paths.tmp, this.paths.link(repo, kind, digest), linkedAt.toISOString());
  }

  async deleteLink(repo: RepositoryRef, kind: LinkKind, digest: string): Promise<void> {
    await rm(this.paths.link(repo, kind, digest), { force: true });
  }

  async getState(name: string): Promise<Buffer | undefined> {
    try {
      return await readFile(this.paths.stateFile(checkStateName(name)));
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  async putState(name: string, bytes: Buffer): Promise<void> {
    const file = this.paths.stateFile(checkStateName(name));
    await mkdir(this.paths.tmp, { recursive: true });
    await writeFileAtomic(this.paths.tmp, file, bytes);
  }

  async listState(prefix: string): Promise<string[]> {
    checkStatePrefix(prefix);
    // Walk from the deepest directory the prefix names completely.
    const slash = prefix.lastIndexOf('/');
    const start = slash < 0 ? this.paths.state : this.paths.stateFile(prefix.slice(0, slash));
    const names: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      for (const entry of await listDirEntries(dir)) {
        const path = join(dir, entry.name);
        if (entry.isDirectory()) await walk(path);
        else if (entry.isFile()) names.push(relative(this.paths.state, path).split(sep).join('/'));
      }
    };
    await walk(start);
    return names.filter((n) => n.startsWith(prefix)).sort();
  }

  async deleteState(name: string): Promise<void> {
    await rm(this.paths.stateFile(checkStateName(name)), { force: true });
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

async function listDirEntries(dir: string) {
  try {
    return await readdir(dir, { withFileTypes: true });
  } catch (e) {
    if (isNotFound(e)) return [];
    throw e;
  }
}

function isNotFound(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}
