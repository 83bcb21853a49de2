import { tryParseDigest } from './digest.js';
import { DOCKER_HUB, upstreamRepository } from './docker-hub.js';
import { canonicalNamespace, isValidNamespace, looksLikeHost } from './namespace.js';
import { isValidRepositoryName, isValidTag } from './names.js';

/**
 * An image reference as users type it (`nginx:1.27`, `ghcr.io/org/app@sha256:...`,
 * `127.0.0.1:5000/team/app:v1`), normalised the way docker does: no registry host means docker.io,
 * and a single-segment Docker Hub name gets `library/`.
 */
export interface ImageReference {
  /** Registry namespace (host[:port]), canonical: `docker.io`, `ghcr.io`, `127.0.0.1:5000`. */
  namespace: string;
  /** Repository inside the namespace: `library/nginx`, `org/app`. */
  repository: string;
  tag: string | undefined;
  digest: string | undefined;
}

export class ImageReferenceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ImageReferenceError';
  }
}

export interface ParseImageReferenceOptions {
  /** Tag to assume when the reference names neither a tag nor a digest; undefined leaves both unset. Default `latest`. */
  defaultTag?: string | undefined;
}

/** Parses and normalises an image reference; throws ImageReferenceError naming what is wrong. */
export function parseImageReference(input: string, options: ParseImageReferenceOptions = {}): ImageReference {
  const defaultTag = 'defaultTag' in options ? options.defaultTag : 'latest';
  const text = input.trim();
  if (text.length === 0) throw new ImageReferenceError('empty image reference');
  let rest = text;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!tryParseDigest(digest)) throw new ImageReferenceError(`invalid digest in ${JSON.stringify(input)}`);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!isValidTag(tag)) throw new ImageReferenceError(`invalid tag in ${JSON.stringify(input)}`);
  }
  let namespace = DOCKER_HUB;
  let repository = rest;
  const slash = rest.indexOf('/');
  if (slash > 0) {
    const first = rest.slice(0, slash);
    if (looksLikeHost(first)) {
      namespace = canonicalNamespace(first);
      repository = rest.slice(slash + 1);
    }
  }
  repository = upstreamRepository(namespace, repository);
  if (!isValidNamespace(namespace)) throw new ImageReferenceError(`invalid registry host in ${JSON.stringify(input)}`);
  if (!isValidRepositoryName(repository)) {
    throw new ImageReferenceError(`invalid repository name in ${JSON.stringify(input)} (lower case letters, digits and . _ - separators)`);
  }
  if (tag === undefined && digest === undefined && defaultTag !== undefined) tag = defaultTag;
  return { namespace, repository, tag, digest };
}

/** `docker.io/library/nginx:1.27`, `ghcr.io/org/app@sha256:...` (tag and digest when both are set). */
export function formatImageReference(ref: ImageReference): string {
  return `${ref.namespace}/${ref.repository}${ref.tag !== undefined ? `:${ref.tag}` : ''}${ref.digest !== undefined ? `@${ref.digest}` : ''}`;
}

/** Reads a list of image references: one per line, `#` starts a comment, blank lines ignored. */
export function parseImageList(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((line) => line.replace(/(^|\s)#.*$/, '').trim())
    .filter((line) => line.length > 0);
}
