/**
 * The cri-o / podman dialect: `registries.conf` mirrors with `location = "<mirror>/<namespace>"`, as
 * `oci-registry client-config crio` prints them. The clients send `/v2/docker.io/library/alpine/...`,
 * which the mirror resolves by the path prefix. cri-o itself needs a kubelet; it shares this code path
 * (containers/image) with skopeo and podman, which are the clients here.
 *
 * skopeo: inspect, `copy --all --preserve-digests` of a multi-arch index, copy of a 104 MiB layer, a
 * 3-level repository, the htpasswd upstream (the mirror holds the credentials). podman: pulls into a
 * private storage (vfs, no mounts) with the same registries.conf. Then the upstreams are stopped and both
 * pull again, into fresh destinations, from the mirror alone.
 */
import t, { type Test } from 'tap';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { findBinary, requireBinaries } from './harness/binaries.js';
import { assertPodmanImage, makePodman, type Podman } from './harness/podman.js';
import { copy, inspectJson, inspectRaw } from './harness/skopeo.js';
import {
  assertDirHoldsImage,
  assertMirrorServed,
  assertOnlyMirrorUpstream,
  hashFile,
  mirrorRequests,
  PRIVATE_NS,
  REFS,
  repoOf,
  runClientConfig,
  seedUpstreams,
  sha256Hex,
  startSeededMirror,
  type Seeded,
  type SeedImages,
} from './harness/seed.js';
import type { MirrorProcess } from '../helpers/mirror-process.js';

interface Env {
  seeded: Seeded;
  mirror: MirrorProcess;
  /** registries.conf = `unqualified-search-registries = []` + the client-config crio output. */
  registriesConf: string;
  generated: string;
}

if (requireBinaries(t, ['skopeo', 'docker-registry', 'htpasswd'])) {
  let seeded: Seeded | undefined;
  let mirror: MirrorProcess | undefined;
  let env: Env | undefined;
  const podmen: Podman[] = [];
  const E = (): Env => {
    if (!env) throw new Error('setup failed (see the before hook)');
    return env;
  };

  t.before(async () => {
    seeded = await seedUpstreams('crio-test');
    mirror = await startSeededMirror(seeded);
    // The command under test writes what skopeo and podman read.
    const { stdout } = await runClientConfig(['crio', '--mirror', mirror.host, '--namespace', `docker.io,${PRIVATE_NS}`]);
    const registriesConf = join(seeded.work, 'registries.conf');
    await writeFile(registriesConf, `unqualified-search-registries = []\n\n${stdout}`);
    // skopeo's dir: transport creates the last path element only.
    await mkdir(join(seeded.work, 'out'), { recursive: true });
    env = { seeded, mirror, registriesConf, generated: stdout };
  });

  t.teardown(async () => {
    for (const p of podmen) await p.destroy();
    await mirror?.stop();
    await seeded?.cleanup();
  });

  const images = (): SeedImages => E().seeded.images;
  const marks = (): { up: number; priv: number; mirror: number } => ({
    up: E().seeded.upstream.accessLog().length,
    priv: E().seeded.privateUpstream.accessLog().length,
    mirror: E().mirror.logs().length,
  });
  const hub = (repoTag: string): string => `docker://docker.io/${repoTag}`;
  const opts = () => ({ registriesConf: E().registriesConf });
  const out = (name: string): string => join(E().seeded.work, 'out', name);

  t.test('client-config crio printed path-prefix mirrors for docker.io and private.example', async (t) => {
    const { generated, mirror } = E();
    t.match(generated, new RegExp(`location = "${mirror.host}/docker\\.io"\\ninsecure = true`));
    t.match(generated, new RegExp(`location = "${mirror.host}/private\\.example"\\ninsecure = true`));
    t.match(generated, /prefix = "docker\.io"\nlocation = "docker\.io"/);
  });

  t.test('skopeo inspect docker.io/library/alpine through the registries.conf mirror', async (t) => {
    const m = marks();
    const raw = await inspectRaw(hub(REFS.docker), opts());
    t.equal(sha256Hex(raw), images().docker.manifestDigest, 'the raw manifest is the upstream manifest');
    const info = await inspectJson(hub(REFS.docker), opts());
    t.equal(info['Digest'], images().docker.manifestDigest, 'inspect Digest');
    t.same(
      info['Layers'],
      images().docker.layers.map((l) => l.digest),
      'inspect Layers (the config came through the mirror)',
    );
    assertOnlyMirrorUpstream(t, E().seeded.upstream, m.up, repoOf(REFS.docker));
    await assertMirrorServed(t, E().mirror, m.mirror, {
      repository: repoOf(REFS.docker),
      namespace: 'docker.io',
      via: 'path',
      blobs: true,
    });
    const paths = mirrorRequests(E().mirror, m.mirror)
      .filter((l) => l.repository === repoOf(REFS.docker))
      .map((l) => l.path);
    t.ok(
      paths.every((p) => p.startsWith('/v2/docker.io/library/alpine/')),
      'skopeo sent the namespace as a path prefix',
      { paths },
    );
  });

  t.test('skopeo copy --all --preserve-digests of the multi-arch index keeps the index and every platform', async (t) => {
    const m = marks();
    const dest = out('multi-all');
    await copy(hub(REFS.multi), `dir:${dest}`, { ...opts(), all: true, preserveDigests: true });
    t.equal(await hashFile(join(dest, 'manifest.json')), images().multi.manifestDigest, 'manifest.json is the index');
    for (const img of images().multi.images) {
      await assertDirHoldsImage(t, dest, img, `${img.manifestDigest.slice('sha256:'.length)}.manifest.json`);
    }
    assertOnlyMirrorUpstream(t, E().seeded.upstream, m.up, repoOf(REFS.multi));
    await assertMirrorServed(t, E().mirror, m.mirror, { repository: repoOf(REFS.multi), namespace: 'docker.io', via: 'path' });
  });

  t.test('skopeo copy of an image with a 104 MiB layer', async (t) => {
    const m = marks();
    const dest = out('large');
    await copy(hub(REFS.large), `dir:${dest}`, opts());
    await assertDirHoldsImage(t, dest, images().large);
    t.equal(E().seeded.upstream.blobGets(images().large.layers[0]!.digest), 1, 'the upstream served the large layer once');
    assertOnlyMirrorUpstream(t, E().seeded.upstream, m.up, repoOf(REFS.large));
    await assertMirrorServed(t, E().mirror, m.mirror, { repository: repoOf(REFS.large), namespace: 'docker.io', via: 'path' });
  });

  t.test('skopeo copy of a 3-level repository docker.io/team/project/app', async (t) => {
    const m = marks();
    const dest = out('deep');
    await copy(hub(REFS.deep), `dir:${dest}`, opts());
    await assertDirHoldsImage(t, dest, images().deep);
    assertOnlyMirrorUpstream(t, E().seeded.upstream, m.up, repoOf(REFS.deep));
    await assertMirrorServed(t, E().mirror, m.mirror, { repository: repoOf(REFS.deep), namespace: 'docker.io', via: 'path' });
  });

  t.test('skopeo copy from the htpasswd upstream (private.example) without client credentials', async (t) => {
    const m = marks();
    const dest = out('secret');
    await copy(`docker://${PRIVATE_NS}/${REFS.secret}`, `dir:${dest}`, opts());
    await assertDirHoldsImage(t, dest, images().secret);
    assertOnlyMirrorUpstream(t, E().seeded.privateUpstream, m.priv, repoOf(REFS.secret));
    await assertMirrorServed(t, E().mirror, m.mirror, { repository: repoOf(REFS.secret), namespace: PRIVATE_NS, via: 'path' });
  });

  /** The podman for a test, or undefined (skip outside CI, fail in CI) when podman is not installed. */
  const podmanFor = async (tt: Test, name: string): Promise<Podman | undefined> => {
    if (!requireBinaries(tt, ['podman'])) return undefined;
    const p = await makePodman(name, E().registriesConf);
    podmen.push(p);
    return p;
  };

  t.test('podman pull docker.io/library/busybox (OCI), a multi-arch image for arm64, and the private namespace', async (t) => {
    const p = await podmanFor(t, 'podman');
    if (!p) return;
    const m = marks();
    await p.run(['pull', `docker.io/${REFS.oci}`]);
    await assertPodmanImage(
      t,
      p,
      `docker.io/${REFS.oci}`,
      images().oci.manifestDigest,
      images().oci.layers.map((l) => l.diffId),
    );
    await p.run(['pull', '--platform', 'linux/arm64', `docker.io/${REFS.multi}`]);
    const arm = images().multi.images.find((i) => i.platform.architecture === 'arm64')!;
    await assertPodmanImage(
      t,
      p,
      `docker.io/${REFS.multi}`,
      images().multi.manifestDigest,
      arm.layers.map((l) => l.diffId),
    );
    await p.run(['pull', `docker.io/${REFS.docker}`]);
    await assertPodmanImage(
      t,
      p,
      `docker.io/${REFS.docker}`,
      images().docker.manifestDigest,
      images().docker.layers.map((l) => l.diffId),
    );
    await p.run(['pull', `${PRIVATE_NS}/${REFS.secret}`]);
    await assertPodmanImage(t, p, `${PRIVATE_NS}/${REFS.secret}`, images().secret.manifestDigest);
    assertOnlyMirrorUpstream(t, E().seeded.upstream, m.up, repoOf(REFS.oci));
    assertOnlyMirrorUpstream(t, E().seeded.privateUpstream, m.priv);
    await assertMirrorServed(t, E().mirror, m.mirror, { repository: repoOf(REFS.oci), namespace: 'docker.io', via: 'path' });
    await assertMirrorServed(t, E().mirror, m.mirror, { repository: repoOf(REFS.multi), namespace: 'docker.io', via: 'path' });
    await assertMirrorServed(t, E().mirror, m.mirror, { repository: repoOf(REFS.secret), namespace: PRIVATE_NS, via: 'path' });
  });

  t.test('offline: upstreams stopped, skopeo and a fresh podman pull again from the mirror alone', async (t) => {
    const { seeded, mirror } = E();
    await seeded.stopUpstreams();
    const down = await fetch(`${seeded.upstream.url}/v2/`, { signal: AbortSignal.timeout(2_000) }).then(
      () => 'answered',
      () => 'down',
    );
    t.equal(down, 'down', 'the open upstream no longer answers');
    const mark = mirror.logs().length;

    const raw = await inspectRaw(hub(REFS.docker), opts());
    t.equal(sha256Hex(raw), images().docker.manifestDigest, 'skopeo inspect: the upstream manifest');
    const multi = out('offline-multi');
    await copy(hub(REFS.multi), `dir:${multi}`, { ...opts(), all: true, preserveDigests: true });
    t.equal(await hashFile(join(multi, 'manifest.json')), images().multi.manifestDigest, 'copy --all: the index');
    t.equal((await readdir(multi)).filter((f) => f.endsWith('.manifest.json')).length, 2, 'copy --all: both platform manifests');
    const large = out('offline-large');
    await copy(hub(REFS.large), `dir:${large}`, opts());
    await assertDirHoldsImage(t, large, images().large);
    const secret = out('offline-secret');
    await copy(`docker://${PRIVATE_NS}/${REFS.secret}`, `dir:${secret}`, opts());
    await assertDirHoldsImage(t, secret, images().secret);

    if (findBinary('podman') || process.env.CI) {
      const p = await podmanFor(t, 'podman');
      if (p) {
        t.equal((await p.run(['images', '--quiet'])).stdout.trim(), '', 'the fresh podman storage is empty');
        await p.run(['pull', `docker.io/${REFS.oci}`]);
        await assertPodmanImage(t, p, `docker.io/${REFS.oci}`, images().oci.manifestDigest);
        await p.run(['pull', '--platform', 'linux/arm64', `docker.io/${REFS.multi}`]);
        await assertPodmanImage(t, p, `docker.io/${REFS.multi}`, images().multi.manifestDigest);
        await p.run(['pull', `${PRIVATE_NS}/${REFS.secret}`]);
        await assertPodmanImage(t, p, `${PRIVATE_NS}/${REFS.secret}`, images().secret.manifestDigest);
      }
    } else {
      t.comment('podman is not installed: its offline pull is skipped (apt-get install podman)');
    }

    const lines = mirrorRequests(mirror, mark);
    t.ok(lines.length > 0, 'the mirror served the offline pulls');
    t.same(
      lines.filter((l) => l.status >= 400 && l.path !== '/v2/').map((l) => `${l.method} ${l.path} ${l.status}`),
      [],
      'no request failed',
    );
    t.ok(
      lines.every((l) => l.path === '/v2/' || l.via === 'path'),
      'every offline request named its namespace in the path',
    );
    t.ok(
      lines.some((l) => l.path.includes('/blobs/') && l.cache === 'hit'),
      'blobs came from the cache',
    );
  });
}
