import { tryParseDigest, type Digest } from '../../oci/digest.js';
import type { LinkKind, RepositoryRef } from '../storage.js';

/**
 * Where each kind of entry lives in the bucket. Blobs and manifests are content-addressed and so
 * shared by every namespace and repository; tags and links (access) are per repository.
 *
 *   <prefix>blobs/<alg>/<hex>                               blob bytes
 *   <prefix>blob-meta/<alg>/<hex>                           touch time of blobs too big for CopyObject (> 5 GiB)
 *   <prefix>manifests/<alg>/<hex>                           raw manifest bytes; Content-Type = media type,
 *                                                           metadata `fetched-at` (ISO time)
 *   <prefix>repositories/<namespace>/<repo>/_tags/<tag>     tag record (JSON); `_` cannot start a repo component
 *   <prefix>links/<namespace>/<repo>/_<blobs|manifests>/<alg>/<hex>   link of a repository to a digest;
 *                                                           body = the time (ISO). Not under repositories/,
 *                                                           so listing repositories (catalog, expiry) stays
 *                                                           one listing of tag records, however many links
 *   <prefix>state/<name>                                    small state objects (access/<replica-id>)
 *   <prefix>_health/<probe>                                 readiness probe, deleted right after writing
 *
 * Callers validate names against the OCI grammars first; this is a second fence. S3 itself has no
 * directories, but `.`/`..` segments are refused anyway: some S3-compatible servers store keys as
 * file paths, and proxies may normalise them.
 */
export class S3Keys {
  readonly blobs: string;
  readonly blobMetas: string;
  readonly manifests: string;
  readonly repositories: string;
  readonly health: string;
  readonly states: string;
  readonly links: string;

  /** `prefix` is normalised already: '' or ending in `/`. */
  constructor(readonly prefix: string) {
    this.blobs = `${prefix}blobs/`;
    this.blobMetas = `${prefix}blob-meta/`;
    this.manifests = `${prefix}manifests/`;
    this.repositories = `${prefix}repositories/`;
    this.health = `${prefix}_health/`;
    this.states = `${prefix}state/`;
    this.links = `${prefix}links/`;
  }

  /** A state object; the caller checked the name (storage/state-name.ts). */
  state(name: string): string {
    return `${this.states}${name}`;
  }

  blob(digest: string): string {
    const d = parse(digest);
    return `${this.blobs}${d.algorithm}/${d.hex}`;
  }

  blobMeta(digest: string): string {
    const d = parse(digest);
    return `${this.blobMetas}${d.algorithm}/${d.hex}`;
  }

  manifest(digest: string): string {
    const d = parse(digest);
    return `${this.manifests}${d.algorithm}/${d.hex}`;
  }

  /** The prefix under which a repository's tags live, ending in `/`. */
  tags(repo: RepositoryRef): string {
    return `${this.repositories}${repositoryPath(repo)}/_tags/`;
  }

  /** The link of a repository to a blob or manifest digest. */
  link(repo: RepositoryRef, kind: LinkKind, digest: string): string {
    const d = parse(digest);
    return `${this.links}${repositoryPath(repo)}/_${kind}s/${d.algorithm}/${d.hex}`;
  }

  tag(repo: RepositoryRef, tag: string): string {
    return `${this.tags(repo)}${segment(tag, 'tag')}`;
  }

  /** The repository of a tag record key (`repositories/<ns>/<repo>/_tags/<tag>`), else undefined. */
  repositoryOfTagKey(key: string): RepositoryRef | undefined {
    if (!key.startsWith(this.repositories)) return undefined;
    const rest = key.slice(this.repositories.length);
    const slash = rest.indexOf('/');
    const tags = rest.indexOf('/_tags/');
    // No repository component starts with `_`, so the first `/_tags/` ends the repository.
    if (slash <= 0 || tags <= slash || tags + '/_tags/'.length >= rest.length) return undefined;
    return { namespace: rest.slice(0, slash), repository: rest.slice(slash + 1, tags) };
  }

  /** The digest of a key under manifests/, or undefined for anything else found there. */
  digestOfManifestKey(key: string): string | undefined {
    if (!key.startsWith(this.manifests)) return undefined;
    const rest = key.slice(this.manifests.length);
    const slash = rest.indexOf('/');
    if (slash < 0) return undefined;
    return tryParseDigest(`${rest.slice(0, slash)}:${rest.slice(slash + 1)}`)?.value;
  }

  /** The digest of a key under blobs/, or undefined for anything else found there. */
  digestOfBlobKey(key: string): string | undefined {
    if (!key.startsWith(this.blobs)) return undefined;
    const rest = key.slice(this.blobs.length);
    const slash = rest.indexOf('/');
    if (slash < 0) return undefined;
    const digest = `${rest.slice(0, slash)}:${rest.slice(slash + 1)}`;
    return tryParseDigest(digest)?.value;
  }
}

function parse(digest: string): Digest {
  const d = tryParseDigest(digest);
  if (!d) throw new Error(`not a digest: ${JSON.stringify(digest.slice(0, 100))}`);
  return d;
}

/** `<namespace>/<repo components>`, each checked; no component may start with `_` (those mark records). */
function repositoryPath(repo: RepositoryRef): string {
  const namespace = segment(repo.namespace, 'namespace');
  const components = repo.repository.split('/').map((c) => segment(c, 'repository component'));
  for (const c of components) {
    if (c.startsWith('_')) throw new Error(`invalid repository component ${JSON.stringify(c.slice(0, 100))}`);
  }
  return `${namespace}/${components.join('/')}`;
}

/** One key segment: non-empty, not `.`/`..`, no separators, no control characters. */
function segment(value: string, what: string): string {
  // eslint-disable-next-line no-control-regex
  if (value.length === 0 || value === '.' || value === '..' || /[/\\\u0000-\u001f\u007f]/.test(value)) {
    throw new Error(`invalid ${what} for a storage key: ${JSON.stringify(value.slice(0, 100))}`);
  }
  return value;
}
