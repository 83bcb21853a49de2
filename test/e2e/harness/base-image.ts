/**
 * A stand-in for `node:24-bookworm-slim` made on this machine, for machines that reach no container
 * registry: a Debian bookworm root from `debootstrap --variant=minbase` (the machine's own apt mirror),
 * imported into a private dockerd, plus this machine's Node.js (/usr/bin/node and
 * /usr/lib/node_modules/npm with the npm/npx links, as Debian's and NodeSource's packages place them).
 *
 * The debootstrap root is cached as a tar under the system temp dir, keyed by what it is made from
 * (suite, mirror, keyring, architecture, debootstrap version), for a week. The cache is used only when
 * it is a regular file owned by this user and writable by nobody else, and it is written under a
 * private temp dir and renamed into place, so a half-written or planted file is never imported.
 * OCI_E2E_DEBOOTSTRAP_CACHE=0 turns the cache off.
 */
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readFileSync } from 'node:fs';
import { chmod, cp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AptSource } from './apt-sources.js';
import { findBinary } from './binaries.js';
import type { Dockerd } from './dockerd.js';
import { run, unmountUnder } from './seed.js';
import { makeTempDir } from './util.js';

const CACHE_MAX_AGE_MS = 7 * 24 * 3600_000;
/** Bump when what goes into the tar changes. */
const CACHE_FORMAT = 1;

export interface RootTar {
  path: string;
  /** True when the tar came from the cache (no debootstrap ran). */
  cached: boolean;
  /** Removes the tar unless it is the cache entry. */
  release(): Promise<void>;
}

function debootstrapVersion(): string {
  // debootstrap keeps its version in its script; reading it is cheaper than running it.
  const bin = findBinary('debootstrap');
  if (!bin) return 'missing';
  const m = /^VERSION='([^']*)'/m.exec(readFileSync(bin, 'utf8'));
  return m?.[1] ?? 'unknown';
}

/** The cache entry, when it is safe to use: a fresh regular file of ours that nobody else can write. */
function usableCache(path: string): boolean {
  try {
    const st = lstatSync(path);
    return st.isFile() && st.uid === process.getuid?.() && (st.mode & 0o022) === 0 && Date.now() - st.mtimeMs < CACHE_MAX_AGE_MS;
  } catch {
    return false;
  }
}

/**
 * A tar of a `debootstrap --variant=minbase SUITE` root from `source`, without apt's downloaded
 * packages and lists (nothing in the image runs apt), taken from the cache when a usable one exists.
 */
export async function minbaseRootTar(source: AptSource, suite: string): Promise<RootTar> {
  const arch = (await run('dpkg', ['--print-architecture'], { timeoutMs: 10_000 })).stdout.trim();
  const key = createHash('sha256')
    .update(
      JSON.stringify({
        CACHE_FORMAT,
        suite,
        variant: 'minbase',
        uri: source.uri,
        keyring: source.keyring ?? '',
        arch,
        version: debootstrapVersion(),
      }),
    )
    .digest('hex')
    .slice(0, 24);
  const cachePath = join(tmpdir(), `oci-e2e-debootstrap-${key}.tar`);
  const useCache = process.env['OCI_E2E_DEBOOTSTRAP_CACHE'] !== '0';
  if (useCache && usableCache(cachePath)) return { path: cachePath, cached: true, release: async () => {} };

  const dir = await makeTempDir('debootstrap');
  const root = join(dir, 'root');
  const tar = join(dir, 'root.tar');
  try {
    await run('debootstrap', ['--variant=minbase', ...(source.keyring ? [`--keyring=${source.keyring}`] : []), suite, root, source.uri], {
      timeoutMs: 30 * 60_000,
    }).catch((e: Error) => {
      let log = '';
      try {
        log = readFileSync(join(root, 'debootstrap', 'debootstrap.log'), 'utf8')
          .split('\n')
          .slice(-30)
          .join('\n');
      } catch {
        // no log
      }
      throw new Error(`${e.message}\n${log}`);
    });
    await run('sh', ['-c', 'rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*', 'sh', root]);
    await run(
      'tar',
      ['--numeric-owner', '--xattrs', '--exclude=./dev/*', '--exclude=./proc/*', '--exclude=./sys/*', '-C', root, '-cf', tar, '.'],
      {
        timeoutMs: 10 * 60_000,
      },
    );
    await chmod(tar, 0o600);
  } catch (e) {
    await unmountUnder(dir);
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
  await unmountUnder(dir);
  await rm(root, { recursive: true, force: true });
  if (useCache) {
    // rename() replaces whatever is at cachePath (a symlink is replaced, not followed).
    await rename(tar, cachePath);
    await rm(dir, { recursive: true, force: true });
    return { path: cachePath, cached: false, release: async () => {} };
  }
  return { path: tar, cached: false, release: () => rm(dir, { recursive: true, force: true }) };
}

/** Where the machine's extra CA bundle goes in the base image. */
const EXTRA_CA_IN_IMAGE = '/etc/ssl/certs/oci-e2e-node-extra-ca.pem';

/**
 * Imports `rootTar` and adds this machine's Node.js on top, tagged `tag`. The build needs no network
 * (the context holds node and npm). When this machine's Node.js trusts extra CAs (NODE_EXTRA_CA_CERTS,
 * e.g. behind a TLS-inspecting proxy), the base trusts them too, so that `npm ci` in the image build
 * reaches the npm registry the way npm on this machine does.
 */
export async function buildNodeBaseImage(docker: Dockerd['docker'], rootTar: string, tag: string): Promise<{ extraCa: boolean }> {
  const minbase = `${tag}-minbase`;
  await docker(['import', rootTar, minbase], 10 * 60_000);
  const ctx = await makeTempDir('node-base-ctx');
  const extraCa = process.env['NODE_EXTRA_CA_CERTS'];
  const withCa = extraCa !== undefined && extraCa !== '' && existsSync(extraCa);
  try {
    await cp('/usr/bin/node', join(ctx, 'node'));
    await cp('/usr/lib/node_modules/npm', join(ctx, 'npm'), { recursive: true, verbatimSymlinks: true });
    if (withCa) await cp(extraCa, join(ctx, 'extra-ca.pem'));
    await writeFile(
      join(ctx, 'Dockerfile'),
      [
        `FROM ${minbase}`,
        'COPY node /usr/bin/node',
        'COPY npm /usr/lib/node_modules/npm',
        'RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/bin/npm \\',
        ' && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/bin/npx',
        ...(withCa ? [`COPY extra-ca.pem ${EXTRA_CA_IN_IMAGE}`, `ENV NODE_EXTRA_CA_CERTS=${EXTRA_CA_IN_IMAGE}`] : []),
        'CMD ["node"]',
        '',
      ].join('\n'),
    );
    await docker(['build', '--tag', tag, ctx], 10 * 60_000);
  } finally {
    await rm(ctx, { recursive: true, force: true });
  }
  return { extraCa: withCa };
}

/** `ldd` of a binary inside `image`: the libraries it resolves, and those it does not. */
export async function lddIn(docker: Dockerd['docker'], image: string, binary: string): Promise<{ output: string; missing: string[] }> {
  const { stdout } = await docker(['run', '--rm', '--network', 'none', image, 'ldd', binary], 120_000);
  const missing = stdout
    .split('\n')
    .filter((l) => /not found/.test(l))
    .map((l) => l.trim());
  return { output: stdout, missing };
}
