/**
 * Air-gapped import and export, end to end with real programs: images are pushed to a real CNCF
 * distribution registry (Debian docker-registry), skopeo turns them into `docker-archive:` and
 * `oci-archive:` tarballs, the registry is stopped for good, and then:
 *
 *   node dist/cli/main.js filesystem --root DIR import FILE [--as REF]
 *
 * loads each tarball into an empty cache, the mirror CLI serves that cache (its upstreams point at the
 * stopped registry, so nothing can come from anywhere else) and skopeo pulls through it. An OCI archive
 * keeps every digest; a docker archive keeps the config and the diff_ids, with a rebuilt manifest that
 * must verify. Finally `export` + `import` into a fresh cache gives the same digests.
 */
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { makeImage, makeIndex, writeDirTransport, writeOciLayout, type Image, type Index } from '../fixtures/images.js';
import { requireBinaries } from './harness/binaries.js';
import { startDockerRegistry } from './harness/registry.js';
import { copy, inspectRaw, pushDir, pushLayout } from './harness/skopeo.js';
import { makeTempDir } from './harness/util.js';
import { startMirrorProcess, type MirrorProcess } from '../helpers/mirror-process.js';
import { runCli } from '../helpers/run-cli.js';

const ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

interface Env {
  work: string;
  /** host:port of the (stopped) registry: the namespace of the OCI images. */
  upstreamHost: string;
  configYaml: string;
  /** Docker schema2, pushed as library/alpine:3.20, saved as docker-archive named alpine:3.20. */
  docker: Image;
  /** OCI index (amd64 + arm64/v8), pushed as team/multi:1, saved with --all as oci-archive named only `1`. */
  multi: Index;
  /** OCI image, pushed as team/app:v1, saved as oci-archive named by its full reference. */
  app: Image;
  dockerArchive: string;
  multiArchive: string;
  appArchive: string;
}

const sha256 = (b: Buffer): string => 'sha256:' + createHash('sha256').update(b).digest('hex');

if (requireBinaries(t, ['skopeo', 'docker-registry'])) {
  let env: Env | undefined;
  const E = (): Env => {
    if (!env) throw new Error('setup failed (see the before hook)');
    return env;
  };

  t.before(async () => {
    const work = await makeTempDir('import-test');
    const upstream = await startDockerRegistry();
    try {
      const docker = await makeImage({ format: 'docker', layers: 2, layerSize: 256 << 10, seed: 301 });
      const multi = makeIndex(
        [
          await makeImage({ format: 'oci', layers: 2, layerSize: 128 << 10, seed: 302, architecture: 'amd64' }),
          await makeImage({ format: 'oci', layers: 1, layerSize: 128 << 10, seed: 303, architecture: 'arm64', variant: 'v8' }),
        ],
        'oci',
      );
      const app = await makeImage({ format: 'oci', layers: 1, layerSize: 64 << 10, seed: 304 });
      await writeDirTransport(join(work, 'dir-docker'), docker);
      await writeOciLayout(join(work, 'layout'), [
        { ref: 'multi', index: multi },
        { ref: 'app', image: app },
      ]);
      const host = upstream.host;
      await pushDir(join(work, 'dir-docker'), `${host}/library/alpine:3.20`);
      await pushLayout(join(work, 'layout'), 'multi', `${host}/team/multi:1`);
      await pushLayout(join(work, 'layout'), 'app', `${host}/team/app:v1`);

      const dockerArchive = join(work, 'alpine-docker.tar');
      const multiArchive = join(work, 'multi-oci.tar');
      const appArchive = join(work, 'app-oci.tar');
      await copy(`${host}/library/alpine:3.20`, `docker-archive:${dockerArchive}:alpine:3.20`);
      await copy(`${host}/team/multi:1`, `oci-archive:${multiArchive}:1`, { all: true, preserveDigests: true });
      await copy(`${host}/team/app:v1`, `oci-archive:${appArchive}:${host}/team/app:v1`, { preserveDigests: true });
      // Every namespace the mirror may ask is the stopped registry: nothing can be fetched from anywhere.
      const configYaml = ['docker.io', host].map((ns) => `- namespace: "${ns}"\n  host: "${host}"\n  tls: false\n`).join('');
      env = { work, upstreamHost: host, configYaml, docker, multi, app, dockerArchive, multiArchive, appArchive };
    } finally {
      await upstream.stop();
    }
  });

  t.teardown(async () => {
    if (env && !process.env.OCI_E2E_KEEP) await rm(env.work, { recursive: true, force: true });
  });

  const freshRoot = async (tt: Test, name: string): Promise<string> => {
    const root = join(E().work, `cache-${name}-${Math.random().toString(36).slice(2, 8)}`);
    tt.teardown(() => rm(root, { recursive: true, force: true }));
    return root;
  };

  const importInto = async (tt: Test, root: string, file: string, ...extra: string[]): Promise<string> => {
    const r = await runCli(['filesystem', '--root', root, 'import', file, ...extra]);
    tt.equal(r.code, 0, `import ${file.split('/').pop() ?? file} exits 0`, { stdout: r.stdout, stderr: r.stderr });
    return r.stdout;
  };

  const serve = async (tt: Test, root: string): Promise<MirrorProcess> => {
    // A reference cannot hold host:port as a path component: the registry's namespace is the default one.
    const mirror = await startMirrorProcess({ root, configYaml: E().configYaml, args: ['--default-namespace', E().upstreamHost] });
    tt.teardown(() => mirror.stop().then(() => undefined));
    return mirror;
  };

  const get = async (
    mirror: MirrorProcess,
    path: string,
  ): Promise<{ status: number; body: Buffer; digest: string | null; type: string | null }> => {
    const res = await fetch(`${mirror.url}${path}`, { headers: { accept: ACCEPT } });
    return {
      status: res.status,
      body: Buffer.from(await res.arrayBuffer()),
      digest: res.headers.get('docker-content-digest'),
      type: res.headers.get('content-type'),
    };
  };

  /** skopeo copy through the mirror into a dir: (skopeo verifies every blob against the manifest). */
  const pullToDir = async (tt: Test, mirror: MirrorProcess, ref: string, all = false): Promise<string> => {
    const dir = join(E().work, `pull-${Math.random().toString(36).slice(2, 10)}`);
    tt.teardown(() => rm(dir, { recursive: true, force: true }));
    await copy(`${mirror.host}/${ref}`, `dir:${dir}`, { all, preserveDigests: true });
    return dir;
  };

  const hashFile = async (path: string): Promise<string> => sha256(await readFile(path));

  t.test('a docker-archive import is served with the upstream gone: same config and diff_ids, and a manifest that verifies', async (tt) => {
    const { docker } = E();
    const root = await freshRoot(tt, 'docker');
    const out = await importInto(tt, root, E().dockerArchive);
    tt.match(out, /imported docker\.io\/library\/alpine:3\.20 /);
    const mirror = await serve(tt, root);

    const m = await get(mirror, '/v2/docker.io/library/alpine/manifests/3.20');
    tt.equal(m.status, 200, 'the tag is served');
    tt.equal(m.type, 'application/vnd.docker.distribution.manifest.v2+json');
    tt.equal(m.digest, sha256(m.body), 'the served manifest hashes to its Docker-Content-Digest');
    const manifest = JSON.parse(m.body.toString('utf8')) as { config: { digest: string }; layers: { digest: string; mediaType: string }[] };
    tt.equal(manifest.config.digest, docker.configDigest, 'config digest is the upstream one');

    const dir = await pullToDir(tt, mirror, 'docker.io/library/alpine:3.20');
    tt.equal(await hashFile(join(dir, 'manifest.json')), m.digest, 'skopeo pulled that manifest');
    const config = JSON.parse((await readFile(join(dir, docker.configDigest.slice(7)))).toString('utf8')) as {
      rootfs: { diff_ids: string[] };
    };
    tt.same(
      config.rootfs.diff_ids,
      docker.layers.map((l) => l.diffId),
      'diff_ids are the upstream ones',
    );
    tt.same(
      manifest.layers.map((l) => l.mediaType),
      docker.layers.map(() => 'application/vnd.docker.image.rootfs.diff.tar'),
      'the archive held uncompressed layers, described as such',
    );
    for (const [i, layer] of manifest.layers.entries()) {
      tt.equal(
        await hashFile(join(dir, layer.digest.slice(7))),
        docker.layers[i]?.diffId,
        `layer ${i} is the upstream layer, uncompressed`,
      );
    }
  });

  t.test('an oci-archive named only by a tag is imported with --as and served with the upstream digests, every platform', async (tt) => {
    const { multi, upstreamHost } = E();
    const root = await freshRoot(tt, 'multi');
    const out = await importInto(tt, root, E().multiArchive, '--as', `${upstreamHost}/team/multi`);
    tt.match(out, `imported ${upstreamHost}/team/multi:1 `);
    const mirror = await serve(tt, root);

    const index = await get(mirror, `/v2/team/multi/manifests/1?ns=${upstreamHost}`);
    tt.equal(index.status, 200);
    tt.equal(index.digest, multi.manifestDigest, 'the index digest is the upstream one');
    tt.ok(index.body.equals(multi.manifest), 'byte for byte');
    const raw = await inspectRaw(`${mirror.host}/team/multi:1`);
    tt.equal(sha256(raw), multi.manifestDigest, 'skopeo sees the same index');
    const dir = await pullToDir(tt, mirror, 'team/multi:1', true);
    for (const img of multi.images) {
      tt.equal(
        await hashFile(join(dir, `${img.manifestDigest.slice(7)}.manifest.json`)),
        img.manifestDigest,
        `${img.platform.architecture} manifest`,
      );
      for (const d of [img.configDigest, ...img.layers.map((l) => l.digest)])
        tt.equal(await hashFile(join(dir, d.slice(7))), d, `blob ${d.slice(0, 19)}`);
    }
  });

  t.test('an oci-archive named by a full reference is imported under that name without --as', async (tt) => {
    const { app, upstreamHost } = E();
    const root = await freshRoot(tt, 'app');
    await importInto(tt, root, E().appArchive);
    const mirror = await serve(tt, root);
    const m = await get(mirror, `/v2/team/app/manifests/v1?ns=${upstreamHost}`);
    tt.equal(m.status, 200);
    tt.equal(m.digest, app.manifestDigest, 'the manifest digest is the upstream one');
    const dir = await pullToDir(tt, mirror, 'team/app:v1');
    tt.equal(await hashFile(join(dir, 'manifest.json')), app.manifestDigest);
  });

  t.test('an oci-archive named only by a tag is refused without --as, and nothing is stored', async (tt) => {
    const root = await freshRoot(tt, 'refused');
    const r = await runCli(['filesystem', '--root', root, 'import', E().multiArchive]);
    tt.not(r.code, 0);
    tt.match(r.stderr, /--as/);
    const files = async (sub: string): Promise<string[]> =>
      (await readdir(join(root, sub), { recursive: true, withFileTypes: true }).catch(() => []))
        .filter((e) => e.isFile())
        .map((e) => e.name);
    tt.same(await files('blobs'), [], 'no blob left behind');
    tt.same(await files('manifests'), [], 'no manifest left behind');
    tt.same(await files('repositories'), [], 'no tag');
  });

  t.test('export then import into an empty cache gives the same digests, and the mirror serves them', async (tt) => {
    const { multi, upstreamHost } = E();
    const first = await freshRoot(tt, 'export-src');
    await importInto(tt, first, E().dockerArchive);
    await importInto(tt, first, E().multiArchive, '--as', `${upstreamHost}/team/multi`);
    await importInto(tt, first, E().appArchive);
    const archive = join(E().work, `export-${Math.random().toString(36).slice(2, 8)}.tar`);
    tt.teardown(() => rm(archive, { force: true }));
    const images = ['alpine:3.20', `${upstreamHost}/team/multi:1`, `${upstreamHost}/team/app:v1`];
    const exported = await runCli(['filesystem', '--root', first, 'export', ...images, '-o', archive]);
    tt.equal(exported.code, 0, 'export exits 0', { stdout: exported.stdout, stderr: exported.stderr });
    tt.match(exported.stdout, /wrote .*: 3 images/);

    const second = await freshRoot(tt, 'export-dst');
    await importInto(tt, second, archive);
    const tree = async (root: string, sub: string): Promise<string[]> =>
      (await readdir(join(root, sub), { recursive: true })).map(String).sort();
    tt.same(await tree(second, 'blobs'), await tree(first, 'blobs'), 'the same blobs');
    tt.same(await tree(second, 'manifests'), await tree(first, 'manifests'), 'the same manifests');
    tt.same(await tree(second, 'repositories'), await tree(first, 'repositories'), 'the same tags');

    const a = await serve(tt, first);
    const b = await serve(tt, second);
    for (const path of ['/v2/docker.io/library/alpine/manifests/3.20', '/v2/team/multi/manifests/1', '/v2/team/app/manifests/v1']) {
      const [x, y] = [await get(a, path), await get(b, path)];
      tt.equal(y.status, 200, `${path} is served after the round trip`);
      tt.equal(y.digest, x.digest, `${path}: same digest`);
    }
    tt.equal((await get(b, '/v2/team/multi/manifests/1')).digest, multi.manifestDigest);
    await pullToDir(tt, b, 'team/multi:1', true);
  });
}
