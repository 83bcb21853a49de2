/**
 * End to end with real programs: CNCF distribution (Debian docker-registry 2.8) as the upstream,
 * skopeo 1.9 as the client, the built mirror (`node dist/cli/main.js`) in between.
 *
 * Fixture images are generated (test/fixtures/images.ts), pushed to the upstream with skopeo (OCI
 * layout for OCI images, `dir:` for Docker schema2), then pulled through the mirror in each dialect a
 * client uses: Docker's plain path (default namespace docker.io), containerd's `?ns=` (with fetch: skopeo
 * cannot send it), cri-o/podman's path prefix (registries.conf mirror). Every digest is compared with the
 * fixture's, every copied blob is hashed, and the upstream's access log shows that the mirror (its
 * configured User-Agent) fetched, never skopeo itself.
 *
 * Every test pulls its own repository, so each is a first (uncached) pull whatever runs before it.
 */
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  makeImage,
  makeIndex,
  sha256,
  writeDirTransport,
  writeOciLayout,
  type Image,
  type Index,
  type LayoutEntry,
} from '../fixtures/images.js';
import { requireBinaries } from './harness/binaries.js';
import { startDockerRegistry, type AccessLogEntry, type DockerRegistry } from './harness/registry.js';
import { copy, inspectJson, inspectRaw, pushDir, pushLayout, writeMirrorRegistriesConf, type Credentials } from './harness/skopeo.js';
import { freePort, makeTempDir, sleep } from './harness/util.js';
import { startMirrorProcess, type MirrorProcess } from '../helpers/mirror-process.js';

const MIRROR_UA = 'oci-registry-e2e-skopeo';
const ACCEPT_ALL = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');
const PRIVATE_NS = 'private.example';
const PRIVATE_CREDS: Credentials = { username: 'e2e-user', password: 'e2e-pass word' };

interface Fixtures {
  /** Docker schema2, 2 layers of 1 MiB. */
  docker: Image;
  /** OCI single-arch, 2 layers. */
  oci: Image;
  /** OCI index, linux/amd64 + linux/arm64/v8. */
  multi: Index;
  /** Docker manifest list, linux/amd64 + linux/arm64/v8. */
  dockerList: Index;
  /** Pushed under team/project/app. */
  deep: Image;
  /** One 64 MiB layer (random content: gzip cannot shrink it). */
  large: Image;
}

interface Env {
  upstream: DockerRegistry;
  privateUpstream: DockerRegistry;
  work: string;
  images: Fixtures;
  /** Repository (upstream name, tag) -> what was pushed there. */
  pushed: Map<string, Image | Index>;
}

interface MirrorEnv extends Env {
  mirror: MirrorProcess;
  /** registries.conf: docker.io and private.example mirrored at 127.0.0.1:MIRROR/<namespace>, no fallback. */
  registriesConf: string;
}

if (requireBinaries(t, ['skopeo', 'docker-registry', 'htpasswd'])) {
  let env: Env | undefined;
  let mirrorEnv: Promise<MirrorEnv> | undefined;
  const E = (): Env => {
    if (!env) throw new Error('setup failed (see the before hook)');
    return env;
  };
  /**
   * The mirror is started in the before hook but awaited by the tests that use it, so that a mirror
   * that does not build or start fails those tests and not the upstream/fixture checks.
   */
  const M = (): Promise<MirrorEnv> => {
    if (!mirrorEnv) throw new Error('setup failed (see the before hook)');
    return mirrorEnv;
  };

  t.before(async () => {
    const work = await makeTempDir('skopeo-test');
    const upstream = await startDockerRegistry();
    const privateUpstream = await startDockerRegistry({ htpasswd: PRIVATE_CREDS });
    // Registered before anything else can fail, so that teardown stops what was started.
    env = { upstream, privateUpstream, work } as Env;

    const images: Fixtures = {
      docker: await makeImage({ format: 'docker', layers: 2, layerSize: 1 << 20, seed: 11 }),
      oci: await makeImage({ format: 'oci', layers: 2, layerSize: 256 << 10, seed: 21 }),
      multi: makeIndex(
        [
          await makeImage({ format: 'oci', layers: 1, layerSize: 128 << 10, seed: 31, architecture: 'amd64' }),
          await makeImage({ format: 'oci', layers: 1, layerSize: 128 << 10, seed: 32, architecture: 'arm64', variant: 'v8' }),
        ],
        'oci',
      ),
      dockerList: makeIndex(
        [
          await makeImage({ format: 'docker', layers: 1, layerSize: 64 << 10, seed: 51, architecture: 'amd64' }),
          await makeImage({ format: 'docker', layers: 1, layerSize: 64 << 10, seed: 52, architecture: 'arm64', variant: 'v8' }),
        ],
        'docker',
      ),
      deep: await makeImage({ format: 'oci', layers: 1, layerSize: 64 << 10, seed: 41 }),
      large: await makeImage({ format: 'oci', layers: 1, layerSize: 64 << 20, seed: 61 }),
    };

    // OCI images from one OCI layout, Docker ones from dir: directories (skopeo 1.9 skips Docker media
    // types in an OCI layout).
    const layout = join(work, 'layout');
    const layoutEntries: LayoutEntry[] = [
      { ref: 'oci', image: images.oci },
      { ref: 'multi', index: images.multi },
      { ref: 'deep', image: images.deep },
      { ref: 'large', image: images.large },
    ];
    await writeOciLayout(layout, layoutEntries);
    await writeDirTransport(join(work, 'dir-docker'), images.docker);
    await writeDirTransport(join(work, 'dir-docker-list'), images.dockerList);

    const pushed = new Map<string, Image | Index>();
    const pushes: [source: string, repo: string, item: Image | Index][] = [
      ['dir-docker', 'library/alpine:3.19', images.docker],
      ['dir-docker', 'library/debian:12', images.docker],
      ['dir-docker', 'library/nginx:1.25', images.docker],
      ['dir-docker', 'library/cached:1', images.docker],
      ['oci', 'library/busybox:1.36', images.oci],
      ['oci', 'library/redis:7', images.oci],
      ['oci', 'library/postgres:16', images.oci],
      ['oci', 'team/ns/app:v1', images.oci],
      ['oci', 'team/prefix/app:v1', images.oci],
      ['multi', 'library/multi:1.0', images.multi],
      ['multi', 'library/multi-all:1.0', images.multi],
      ['dir-docker-list', 'library/dlist:1', images.dockerList],
      ['deep', 'team/project/app:v1', images.deep],
      ['deep', 'team/project/app-prefix:v1', images.deep],
      ['large', 'library/large:1', images.large],
    ];
    for (const [source, repo, item] of pushes) {
      const dest = `${upstream.host}/${repo}`;
      if (source.startsWith('dir-')) await pushDir(join(work, source), dest);
      else await pushLayout(layout, source, dest);
      pushed.set(repo, item);
    }
    await pushLayout(layout, 'oci', `${privateUpstream.host}/team/secret:1`, PRIVATE_CREDS);

    const configYaml = [
      { namespace: 'docker.io', host: upstream.host },
      { namespace: upstream.host, host: upstream.host },
      { namespace: PRIVATE_NS, host: privateUpstream.host, username: PRIVATE_CREDS.username, password: PRIVATE_CREDS.password },
    ]
      .map((u) =>
        [
          `- namespace: ${JSON.stringify(u.namespace)}`,
          `  host: ${JSON.stringify(u.host)}`,
          '  tls: false',
          `  user_agent: ${MIRROR_UA}`,
          ...(u.username ? [`  username: ${JSON.stringify(u.username)}`, `  password: ${JSON.stringify(u.password)}`] : []),
        ].join('\n'),
      )
      .join('\n');
    env = { upstream, privateUpstream, work, images, pushed };
    const base = env;
    mirrorEnv = (async (): Promise<MirrorEnv> => {
      const mirror = await startMirrorProcess({ root: join(work, 'cache'), configYaml });
      // The primary locations are a closed port: a pull that does not go through the mirror fails.
      const closed = `127.0.0.1:${await freePort()}`;
      const registriesConf = await writeMirrorRegistriesConf(join(work, 'registries.conf'), [
        { prefix: 'docker.io', location: closed, insecure: true, mirrors: [{ location: `${mirror.host}/docker.io` }] },
        { prefix: PRIVATE_NS, location: closed, insecure: true, mirrors: [{ location: `${mirror.host}/${PRIVATE_NS}` }] },
      ]);
      return { ...base, mirror, registriesConf };
    })();
    mirrorEnv.catch(() => undefined); // awaited (and reported) by each test
  });

  t.teardown(async () => {
    const e = env;
    if (!e) return;
    const m = await mirrorEnv?.catch(() => undefined);
    await m?.mirror.stop();
    await e.upstream?.stop();
    await e.privateUpstream?.stop();
    if (!process.env.OCI_E2E_KEEP) await rm(e.work, { recursive: true, force: true });
  });

  /** Upstream access log entries after `mark` (an index from markUpstream). */
  const since = (registry: DockerRegistry, mark: number): AccessLogEntry[] => registry.accessLog().slice(mark);

  /**
   * Asserts that the upstream saw only the mirror after `mark` (skopeo talks to the mirror alone) and,
   * when `repo` is given, that the mirror fetched that repository's manifest.
   */
  const assertOnlyMirrorUpstream = (tt: Test, registry: DockerRegistry, mark: number, repo?: string): void => {
    const entries = since(registry, mark);
    const strangers = entries.filter((e) => e.userAgent !== MIRROR_UA);
    tt.same(
      strangers.map((e) => e.line),
      [],
      'every upstream request came from the mirror',
    );
    if (repo) {
      const fetched = entries.filter((e) => e.userAgent === MIRROR_UA && e.path.startsWith(`/v2/${repo}/manifests/`));
      tt.ok(fetched.length > 0, `the mirror fetched /v2/${repo}/manifests/... from the upstream`, {
        upstreamRequests: entries.map((e) => `${e.method} ${e.url} ${e.status}`),
      });
    }
  };

  /**
   * Asserts that the mirror logged the client's manifest request under `/v2/<sentName>/manifests/` and,
   * where its request log line carries them, resolved it to `namespace`, `repository` via `via`
   * ('default' | 'ns' | 'path').
   */
  const assertMirrorLogged = async (
    tt: Test,
    mirror: MirrorProcess,
    sentName: string,
    expected: { namespace: string; repository: string; via: 'default' | 'ns' | 'path' },
  ): Promise<void> => {
    const prefix = `/v2/${sentName}/manifests/`;
    const matching = (): Record<string, unknown>[] =>
      mirror.logs().filter((l) => {
        const p = typeof l['path'] === 'string' ? l['path'] : typeof l['url'] === 'string' ? l['url'] : '';
        return p.startsWith(prefix);
      });
    // The line is written when the response ends and arrives through a pipe: allow it a moment.
    const deadline = Date.now() + 3_000;
    let lines = matching();
    while (lines.length === 0 && Date.now() < deadline) {
      await sleep(25);
      lines = matching();
    }
    tt.ok(lines.length > 0, `the mirror logged a request for ${prefix}...`, { mirrorLog: mirror.logLines.slice(-20) });
    const resolved = lines.filter((l) => 'namespace' in l || 'repository' in l || 'via' in l);
    for (const l of resolved)
      tt.match(l, expected, `the mirror resolved ${prefix} to ${expected.namespace} ${expected.repository} via ${expected.via}`);
  };

  const hashFile = async (path: string): Promise<string> =>
    'sha256:' +
    createHash('sha256')
      .update(await readFile(path))
      .digest('hex');

  /** Asserts that a `dir:` copy holds `image` exactly: manifest (at `manifestFile`), config and layers. */
  const assertDirHoldsImage = async (tt: Test, dir: string, image: Image, manifestFile = 'manifest.json'): Promise<void> => {
    tt.equal(await hashFile(join(dir, manifestFile)), image.manifestDigest, `${manifestFile} is the upstream manifest`);
    for (const digest of [image.configDigest, ...image.layers.map((l) => l.digest)]) {
      const path = join(dir, digest.slice('sha256:'.length));
      tt.equal(await hashFile(path).catch((e: Error) => e.message), digest, `blob ${digest.slice(0, 19)} hashes to its digest`);
    }
  };

  const mirrorRef = (mirror: MirrorProcess, path: string): string => `docker://${mirror.host}/${path}`;

  const fetchMirror = async (
    mirror: MirrorProcess,
    path: string,
    init: RequestInit = {},
  ): Promise<{ status: number; headers: Headers; body: Buffer }> => {
    const res = await fetch(`${mirror.url}${path}`, { ...init, signal: AbortSignal.timeout(60_000) });
    return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
  };

  t.test('fixture images pushed with skopeo keep their digests in the upstream registry', async (t) => {
    const { upstream, pushed, privateUpstream, images } = E();
    for (const [repo, item] of pushed) {
      const raw = await inspectRaw(`${upstream.host}/${repo}`);
      t.equal(sha256(raw), item.manifestDigest, `${repo} is stored byte for byte`);
    }
    const raw = await inspectRaw(`${privateUpstream.host}/team/secret:1`, { creds: PRIVATE_CREDS });
    t.equal(sha256(raw), images.oci.manifestDigest, 'the htpasswd registry holds team/secret:1');
  });

  t.test('docker-style path: skopeo inspect --raw of a Docker schema2 image returns the upstream manifest', async (t) => {
    const { mirror, upstream, images } = await M();
    const mark = upstream.accessLog().length;
    const raw = await inspectRaw(mirrorRef(mirror, 'library/alpine:3.19'));
    t.equal(sha256(raw), images.docker.manifestDigest);
    assertOnlyMirrorUpstream(t, upstream, mark, 'library/alpine');
    await assertMirrorLogged(t, mirror, 'library/alpine', { namespace: 'docker.io', repository: 'library/alpine', via: 'default' });
  });

  t.test('docker-style path: skopeo copy of an OCI image to dir: yields the upstream manifest and blobs', async (t) => {
    const { mirror, upstream, images, work } = await M();
    const mark = upstream.accessLog().length;
    const dest = join(work, 'out-busybox');
    await copy(mirrorRef(mirror, 'library/busybox:1.36'), `dir:${dest}`);
    await assertDirHoldsImage(t, dest, images.oci);
    assertOnlyMirrorUpstream(t, upstream, mark, 'library/busybox');
    await assertMirrorLogged(t, mirror, 'library/busybox', { namespace: 'docker.io', repository: 'library/busybox', via: 'default' });
  });

  t.test('docker-style path: a single-segment name (debian) is served from docker.io library/debian', async (t) => {
    const { mirror, upstream, images } = await M();
    const mark = upstream.accessLog().length;
    const raw = await inspectRaw(mirrorRef(mirror, 'debian:12'));
    t.equal(sha256(raw), images.docker.manifestDigest);
    assertOnlyMirrorUpstream(t, upstream, mark, 'library/debian');
    await assertMirrorLogged(t, mirror, 'debian', { namespace: 'docker.io', repository: 'library/debian', via: 'default' });
  });

  t.test('ns=docker.io: GET manifest and blob by fetch return the upstream bytes and digest headers', async (t) => {
    const { mirror, upstream, images } = await M();
    const mark = upstream.accessLog().length;
    const m = await fetchMirror(mirror, '/v2/library/nginx/manifests/1.25?ns=docker.io', { headers: { accept: ACCEPT_ALL } });
    t.equal(m.status, 200, 'manifest status');
    t.equal(sha256(m.body), images.docker.manifestDigest, 'manifest bytes');
    t.equal(m.headers.get('docker-content-digest'), images.docker.manifestDigest, 'Docker-Content-Digest');
    t.equal((m.headers.get('content-type') ?? '').split(';')[0], images.docker.mediaType, 'Content-Type');
    const layer = images.docker.layers[1]!;
    const b = await fetchMirror(mirror, `/v2/library/nginx/blobs/${layer.digest}?ns=docker.io`);
    t.equal(b.status, 200, 'blob status');
    t.equal(sha256(b.body), layer.digest, 'blob bytes hash to the digest');
    assertOnlyMirrorUpstream(t, upstream, mark, 'library/nginx');
    await assertMirrorLogged(t, mirror, 'library/nginx', { namespace: 'docker.io', repository: 'library/nginx', via: 'ns' });
    const forwardedNs = since(upstream, mark).filter((e) => e.url.includes('ns='));
    t.same(
      forwardedNs.map((e) => e.url),
      [],
      'ns is never forwarded to the upstream',
    );
  });

  t.test('ns=<registry host:port>: a manifest by fetch comes from that configured namespace', async (t) => {
    const { mirror, upstream, images } = await M();
    const mark = upstream.accessLog().length;
    const m = await fetchMirror(mirror, `/v2/team/ns/app/manifests/v1?ns=${encodeURIComponent(upstream.host)}`, {
      headers: { accept: ACCEPT_ALL },
    });
    t.equal(m.status, 200, 'status');
    t.equal(sha256(m.body), images.oci.manifestDigest, 'manifest bytes');
    t.equal(m.headers.get('docker-content-digest'), images.oci.manifestDigest, 'Docker-Content-Digest');
    assertOnlyMirrorUpstream(t, upstream, mark, 'team/ns/app');
    await assertMirrorLogged(t, mirror, 'team/ns/app', { namespace: upstream.host, repository: 'team/ns/app', via: 'ns' });
  });

  t.test('path prefix <registry host:port>/team/prefix/app: a manifest by fetch comes from that namespace', async (t) => {
    const { mirror, upstream, images } = await M();
    const mark = upstream.accessLog().length;
    const m = await fetchMirror(mirror, `/v2/${upstream.host}/team/prefix/app/manifests/v1`, { headers: { accept: ACCEPT_ALL } });
    t.equal(m.status, 200, 'status');
    t.equal(sha256(m.body), images.oci.manifestDigest, 'manifest bytes');
    assertOnlyMirrorUpstream(t, upstream, mark, 'team/prefix/app');
    await assertMirrorLogged(t, mirror, `${upstream.host}/team/prefix/app`, {
      namespace: upstream.host,
      repository: 'team/prefix/app',
      via: 'path',
    });
  });

  t.test('path prefix via registries.conf mirror: skopeo inspect docker.io/library/redis returns the upstream image', async (t) => {
    const { mirror, upstream, images, registriesConf } = await M();
    const mark = upstream.accessLog().length;
    const raw = await inspectRaw('docker://docker.io/library/redis:7', { registriesConf });
    t.equal(sha256(raw), images.oci.manifestDigest, 'raw manifest');
    const info = await inspectJson('docker://docker.io/library/redis:7', { registriesConf });
    t.equal(info['Digest'], images.oci.manifestDigest, 'inspect Digest');
    t.same(
      info['Layers'],
      images.oci.layers.map((l) => l.digest),
      'inspect Layers (reads the config through the mirror)',
    );
    assertOnlyMirrorUpstream(t, upstream, mark, 'library/redis');
    await assertMirrorLogged(t, mirror, 'docker.io/library/redis', { namespace: 'docker.io', repository: 'library/redis', via: 'path' });
  });

  t.test('path prefix via registries.conf mirror: skopeo copy docker.io/library/postgres to dir: hashes every blob', async (t) => {
    const { mirror, upstream, images, work, registriesConf } = await M();
    const mark = upstream.accessLog().length;
    const dest = join(work, 'out-postgres');
    await copy('docker://docker.io/library/postgres:16', `dir:${dest}`, { registriesConf });
    await assertDirHoldsImage(t, dest, images.oci);
    assertOnlyMirrorUpstream(t, upstream, mark, 'library/postgres');
    await assertMirrorLogged(t, mirror, 'docker.io/library/postgres', {
      namespace: 'docker.io',
      repository: 'library/postgres',
      via: 'path',
    });
  });

  t.test('multi-arch OCI index: copy with --override-arch arm64 copies the arm64 image', async (t) => {
    const { mirror, upstream, images, work } = await M();
    const mark = upstream.accessLog().length;
    const arm = images.multi.images.find((i) => i.platform.architecture === 'arm64')!;
    const amd = images.multi.images.find((i) => i.platform.architecture === 'amd64')!;
    const raw = await inspectRaw(mirrorRef(mirror, 'library/multi:1.0'));
    t.equal(sha256(raw), images.multi.manifestDigest, 'inspect --raw returns the index');
    const dest = join(work, 'out-multi-arm64');
    await copy(mirrorRef(mirror, 'library/multi:1.0'), `dir:${dest}`, { overrideArch: 'arm64', overrideOs: 'linux' });
    await assertDirHoldsImage(t, dest, arm);
    const files = await readdir(dest);
    t.notOk(files.includes(amd.layers[0]!.digest.slice('sha256:'.length)), 'the amd64 layer was not copied');
    assertOnlyMirrorUpstream(t, upstream, mark, 'library/multi');
    await assertMirrorLogged(t, mirror, 'library/multi', { namespace: 'docker.io', repository: 'library/multi', via: 'default' });
  });

  t.test('multi-arch OCI index: copy --all --preserve-digests keeps the index and every platform', async (t) => {
    const { mirror, upstream, images, work } = await M();
    const mark = upstream.accessLog().length;
    const dest = join(work, 'out-multi-all');
    await copy(mirrorRef(mirror, 'library/multi-all:1.0'), `dir:${dest}`, { all: true, preserveDigests: true });
    t.equal(await hashFile(join(dest, 'manifest.json')), images.multi.manifestDigest, 'manifest.json is the index');
    for (const img of images.multi.images) {
      await assertDirHoldsImage(t, dest, img, `${img.manifestDigest.slice('sha256:'.length)}.manifest.json`);
    }
    assertOnlyMirrorUpstream(t, upstream, mark, 'library/multi-all');
    await assertMirrorLogged(t, mirror, 'library/multi-all', { namespace: 'docker.io', repository: 'library/multi-all', via: 'default' });
  });

  t.test('multi-arch Docker manifest list: copy with --override-arch arm64 copies the arm64 image', async (t) => {
    const { mirror, upstream, images, work } = await M();
    const mark = upstream.accessLog().length;
    const arm = images.dockerList.images.find((i) => i.platform.architecture === 'arm64')!;
    const dest = join(work, 'out-dlist-arm64');
    await copy(mirrorRef(mirror, 'library/dlist:1'), `dir:${dest}`, { overrideArch: 'arm64', overrideOs: 'linux' });
    await assertDirHoldsImage(t, dest, arm);
    assertOnlyMirrorUpstream(t, upstream, mark, 'library/dlist');
    await assertMirrorLogged(t, mirror, 'library/dlist', { namespace: 'docker.io', repository: 'library/dlist', via: 'default' });
  });

  t.test('3-level repository name team/project/app: skopeo copy through the docker-style path', async (t) => {
    const { mirror, upstream, images, work } = await M();
    const mark = upstream.accessLog().length;
    const dest = join(work, 'out-deep');
    await copy(mirrorRef(mirror, 'team/project/app:v1'), `dir:${dest}`);
    await assertDirHoldsImage(t, dest, images.deep);
    assertOnlyMirrorUpstream(t, upstream, mark, 'team/project/app');
    await assertMirrorLogged(t, mirror, 'team/project/app', { namespace: 'docker.io', repository: 'team/project/app', via: 'default' });
  });

  t.test('3-level repository name: skopeo copy docker.io/team/project/app-prefix via the path-prefix mirror', async (t) => {
    const { mirror, upstream, images, work, registriesConf } = await M();
    const mark = upstream.accessLog().length;
    const dest = join(work, 'out-deep-prefix');
    await copy('docker://docker.io/team/project/app-prefix:v1', `dir:${dest}`, { registriesConf });
    await assertDirHoldsImage(t, dest, images.deep);
    assertOnlyMirrorUpstream(t, upstream, mark, 'team/project/app-prefix');
    await assertMirrorLogged(t, mirror, 'docker.io/team/project/app-prefix', {
      namespace: 'docker.io',
      repository: 'team/project/app-prefix',
      via: 'path',
    });
  });

  t.test('an upstream behind htpasswd is pulled with the configured credentials (skopeo sends none)', async (t) => {
    const { mirror, privateUpstream, images, work, registriesConf } = await M();
    const mark = privateUpstream.accessLog().length;
    const dest = join(work, 'out-secret');
    await copy(`docker://${PRIVATE_NS}/team/secret:1`, `dir:${dest}`, { registriesConf });
    await assertDirHoldsImage(t, dest, images.oci);
    const entries = since(privateUpstream, mark);
    t.ok(
      entries.some((e) => e.userAgent === MIRROR_UA && e.path === '/v2/team/secret/manifests/1' && e.status === 200),
      'the mirror fetched the manifest with credentials',
      {
        upstreamRequests: entries.map((e) => `${e.method} ${e.url} ${e.status}`),
      },
    );
    assertOnlyMirrorUpstream(t, privateUpstream, mark);
    await assertMirrorLogged(t, mirror, `${PRIVATE_NS}/team/secret`, { namespace: PRIVATE_NS, repository: 'team/secret', via: 'path' });
  });

  t.test('a 64 MiB layer streams through the mirror intact (skopeo copy to dir:)', async (t) => {
    const { mirror, upstream, images, work } = await M();
    const mark = upstream.accessLog().length;
    const dest = join(work, 'out-large');
    await copy(mirrorRef(mirror, 'library/large:1'), `dir:${dest}`);
    await assertDirHoldsImage(t, dest, images.large);
    t.equal(upstream.blobGets(images.large.layers[0]!.digest), 1, 'the upstream served the layer once');
    assertOnlyMirrorUpstream(t, upstream, mark, 'library/large');
  });

  t.test('a second pull of the same image does not download its blobs from the upstream again', async (t) => {
    const { mirror, upstream, images, work } = await M();
    await copy(mirrorRef(mirror, 'library/cached:1'), `dir:${join(work, 'out-cached-1')}`);
    const blobs = [images.docker.configDigest, ...images.docker.layers.map((l) => l.digest)];
    const after1 = blobs.map((d) => upstream.blobGets(d));
    const dest = join(work, 'out-cached-2');
    await copy(mirrorRef(mirror, 'library/cached:1'), `dir:${dest}`);
    await assertDirHoldsImage(t, dest, images.docker);
    t.same(
      blobs.map((d) => upstream.blobGets(d)),
      after1,
      'no new upstream blob GETs for the second pull',
    );
  });
}
