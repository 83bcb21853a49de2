import { resolve, sep } from 'node:path';
import { tryParseDigest } from '../../oci/digest.js';
import type { LinkKind, RepositoryRef } from '../storage.js';

/**
 * Where each kind of entry lives under the cache root. Every path is checked to stay inside the
 * root, even though callers validate names first: a second fence costs nothing.
 *
 *   blobs/<alg>/<2 hex>/<hex>                 blob bytes, shared by every namespace and repository
 *   manifests/<alg>/<2 hex>/<hex>             one JSON header line, then the manifest's raw bytes
 *   repositories/<namespace>/<repo>/_tags/<tag>   tag record (JSON); `_` cannot start a repo component
 *   repositories/<namespace>/<repo>/_links/<blobs|manifests>/<alg>/<hex>   link: the time, as ISO text
 *   state/<name>                              small state objects (access/<replica-id>), created on first use
 *   tmp/                                      in-progress writes, swept at start
 */
const LINK_DIRS: Record<LinkKind, string> = { blob: 'blobs', manifest: 'manifests' };

export class FilesystemPaths {
  readonly root: string;
  readonly tmp: string;
  readonly blobs: string;
  readonly manifests: string;
  readonly repositories: string;
  readonly state: string;

  constructor(root: string) {
    this.root = resolve(root);
    this.tmp = this.inside('tmp');
    this.blobs = this.inside('blobs');
    this.manifests = this.inside('manifests');
    this.repositories = this.inside('repositories');
    this.state = this.inside('state');
  }

  blob(digest: string): string {
    const d = this.digest(digest);
    return this.inside('blobs', d.algorithm, d.hex.slice(0, 2), d.hex);
  }

  manifest(digest: string): string {
    const d = this.digest(digest);
    return this.inside('manifests', d.algorithm, d.hex.slice(0, 2), d.hex);
  }

  tagsDir(repo: RepositoryRef): string {
    return this.inside('repositories', repo.namespace, ...repo.repository.split('/'), '_tags');
  }

  tag(repo: RepositoryRef, tag: string): string {
    if (tag.includes('/') || tag.includes('\0') || tag === '.' || tag === '..') throw new Error('invalid tag for a path');
    return this.inside('repositories', repo.namespace, ...repo.repository.split('/'), '_tags', tag);
  }

  /** The link file of a repository to a blob or manifest digest. */
  link(repo: RepositoryRef, kind: LinkKind, digest: string): string {
    const d = this.digest(digest);
    const components = repo.repository.split('/');
    // `_links` must not be reachable as a repository component (no valid name starts with `_`).
    if (components.some((c) => c.startsWith('_'))) throw new Error('invalid repository component for a path');
    return this.inside('repositories', repo.namespace, ...components, '_links', LINK_DIRS[kind], d.algorithm, d.hex);
  }

  /** A state object; the caller checked the name (storage/state-name.ts). */
  stateFile(name: string): string {
    return this.inside('state', ...name.split('/'));
  }

  /** A directory under repositories/ (namespace, then repository components). */
  repositoryDir(...segments: string[]): string {
    return this.inside('repositories', ...segments);
  }

  private digest(digest: string) {
    const d = tryParseDigest(digest);
    if (!d) throw new Error(`not a digest: ${JSON.stringify(digest.slice(0, 100))}`);
    return d;
  }

  /** Joins segments under the root and refuses anything that would leave it. */
  private inside(...segments: string[]): string {
    for (const s of segments) {
      if (s.length === 0 || s === '.' || s === '..' || s.includes('/') || s.includes('\\') || s.includes('\0')) {
        throw new Error(`invalid path segment ${JSON.stringify(s.slice(0, 100))}`);
      }
    }
    const p = resolve(this.root, ...segments);
    if (!p.startsWith(this.root + sep)) throw new Error('path leaves the cache root');
    return p;
  }
}
