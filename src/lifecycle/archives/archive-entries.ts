import { once } from 'node:events';
import { createHash, type Hash } from 'node:crypto';
import { posix } from 'node:path';
import type { Readable } from 'node:stream';
import { createGunzip, type Gunzip } from 'node:zlib';
import { tryParseDigest, type Digest } from '../../oci/digest.js';

/**
 * Small pieces of reading image tarballs: entry names, the digest an entry's name claims, gzip
 * detection, and hashing the decompressed bytes of a gzip stream on the fly (a Docker layer's diff_id).
 */

/** `./blobs/sha256/ab` -> `blobs/sha256/ab`; undefined for names that leave the archive root. */
export function normalizeEntryName(name: string): string | undefined {
  const n = posix.normalize(name.replace(/\\/g, '/')).replace(/^\/+/, '').replace(/\/+$/, '');
  if (n === '' || n === '.' || n.startsWith('../') || n === '..') return undefined;
  return n;
}

/** Where a symlink or hard link points, as an entry name. Symlinks are relative to their directory, hard links to the root. */
export function linkTarget(entryName: string, linkname: string, type: 'symlink' | 'link'): string | undefined {
  if (type === 'link') return normalizeEntryName(linkname);
  if (linkname.startsWith('/')) return normalizeEntryName(linkname);
  return normalizeEntryName(posix.join(posix.dirname(entryName), linkname));
}

/** `blobs/<alg>/<hex>` of an OCI image layout (also used by Docker 25+ saves). */
export function layoutBlobDigest(name: string): Digest | undefined {
  const m = /^blobs\/([a-z0-9]+)\/([a-f0-9]+)$/.exec(name);
  return m ? tryParseDigest(`${m[1]}:${m[2]}`) : undefined;
}

/** The path of a digest inside an OCI image layout. */
export function layoutBlobPath(digest: string): string {
  const i = digest.indexOf(':');
  return `blobs/${digest.slice(0, i)}/${digest.slice(i + 1)}`;
}

/**
 * The digest a docker-archive file name claims: `<hex>.json` (a config, named by its digest) and
 * `<hex>.tar` (skopeo names uncompressed layers by their diff_id, which is then their digest).
 */
export function namedDigest(name: string): Digest | undefined {
  const m = /^([a-f0-9]{64})(?:\.json|\.tar)?$/.exec(posix.basename(name));
  return m ? tryParseDigest(`sha256:${m[1]}`) : undefined;
}

export function isGzip(first: Buffer | undefined): boolean {
  return first !== undefined && first.length >= 2 && first[0] === 0x1f && first[1] === 0x8b;
}

/** Whether the bytes start (after white space) with `{`: a JSON document (manifest, config, index). */
export function looksLikeJson(first: Buffer | undefined): boolean {
  if (!first) return false;
  for (const b of first) {
    if (b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09) continue;
    return b === 0x7b;
  }
  return false;
}

export function hexDigest(algorithm: string, hash: Hash): string {
  return `${algorithm}:${hash.digest('hex')}`;
}

/**
 * sha256 of the gunzipped bytes, fed chunk by chunk (with backpressure). A stream that is not valid gzip
 * yields undefined instead of failing: the caller then has no diff_id for it.
 */
export class GunzipHasher {
  private readonly gunzip: Gunzip = createGunzip();
  private readonly hash = createHash('sha256');
  private failed = false;

  constructor() {
    this.gunzip.on('data', (chunk: Buffer) => this.hash.update(chunk));
    this.gunzip.on('error', () => {
      this.failed = true;
    });
  }

  async write(chunk: Buffer): Promise<void> {
    if (this.failed) return;
    if (this.gunzip.write(chunk)) return;
    await Promise.race([once(this.gunzip, 'drain'), once(this.gunzip, 'close')]).catch(() => undefined);
  }

  async end(): Promise<string | undefined> {
    if (!this.failed) {
      this.gunzip.end();
      await Promise.race([once(this.gunzip, 'end'), once(this.gunzip, 'close')]).catch(() => undefined);
    }
    return this.failed ? undefined : hexDigest('sha256', this.hash);
  }

  destroy(): void {
    this.gunzip.destroy();
  }
}

/** The diff_id of a gzip blob read back from storage (rare path: an archive that did not let us hash it on the way in). */
export async function gunzipDigest(stream: Readable): Promise<string | undefined> {
  const hasher = new GunzipHasher();
  try {
    for await (const chunk of stream) await hasher.write(chunk as Buffer);
    return await hasher.end();
  } finally {
    hasher.destroy();
  }
}
