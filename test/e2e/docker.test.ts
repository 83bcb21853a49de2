/**
 * Docker Engine (Debian docker.io, a private dockerd) pulls through the mirror configured by the
 * daemon.json that `oci-registry client-config docker` prints (`registry-mirrors`): Docker sends plain
 * `/v2/library/alpine/...` paths for docker.io images, which the mirror resolves to its default namespace.
 *
 * Docker uses registry-mirrors for docker.io only; the htpasswd upstream is reached by naming the mirror
 * in the reference (`MIRROR/private.example/team/secret:1`, the path-prefix dialect). Each pull asserts
 * `docker image inspect` RepoDigests against the upstream digest, that the upstream saw only the mirror's
 * User-Agent, and the mirror's request log. Then the upstreams are stopped, every image is removed, and
 * Docker pulls them again from the mirror alone.
 */
import t, { type Test } from 'tap';
import { requireBinaries } from './harness/binaries.js';
import { startDockerd, type Dockerd } from './harness/dockerd.js';
import {
  assertMirrorServed,
  assertOnlyMirrorUpstream,
  mirrorRequests,
  PRIVATE_NS,
  REFS,
  repoOf,
  requireRoot,
  runClientConfig,
  seedUpstreams,
  startSeededMirror,
  type Seeded,
  type SeedImages,
} from './harness/seed.js';
import type { MirrorProcess } from '../helpers/mirror-process.js';

interface Env {
  seeded: Seeded;
  mirror: MirrorProcess;
  daemonJson: string;
  note: string;
}

if (requireBinaries(t, ['dockerd', 'docker', 'skopeo', 'docker-registry', 'htpasswd']) && requireRoot(t, 'the Docker Engine e2e test')) {
  let seeded: Seeded | undefined;
  let mirror: MirrorProcess | undefined;
  let env: Env | undefined;
  let dockerd: Dockerd | undefined;
  let dockerdError: Error | undefined;
  const E = (): Env => {
    if (!env) throw new Error('setup failed (see the before hook)');
    return env;
  };
  /**
   * dockerd, or undefined when it cannot run here: then the test fails with the reason under CI (CI set),
   * and is skipped with the reason printed loudly elsewhere. Call first and return on undefined.
   */
  const D = (tt: Test): Dockerd | undefined => {
    if (dockerd) return dockerd;
    const reason = `DOCKERD CANNOT RUN HERE: ${dockerdError?.message ?? 'dockerd did not start (see the before hook)'}`;
    if (process.env.CI) {
      tt.fail(reason);
    } else {
      process.stderr.write(`# ${reason}\n`);
      tt.plan(0, reason.split('\n')[0]);
    }
    return undefined;
  };

  t.before(async () => {
    seeded = await seedUpstreams('docker-test');
    mirror = await startSeededMirror(seeded);
    // The command under test writes what dockerd reads (--config-file).
    const { stdout, stderr } = await runClientConfig(['docker', '--mirror', mirror.url]);
    env = { seeded, mirror, daemonJson: stdout, note: stderr };
    try {
      dockerd = await startDockerd({ daemonJson: stdout });
      for (const n of dockerd.notes) t.comment(n);
      t.comment(`dockerd storage driver: ${dockerd.storageDriver}`);
    } catch (e) {
      dockerdError = e as Error;
      t.comment(`dockerd cannot run here: ${dockerdError.message}`);
    }
  });

  t.teardown(async () => {
    await dockerd?.stop();
    await mirror?.stop();
    await seeded?.cleanup();
  });

  const images = (): SeedImages => E().seeded.images;
  const marks = (): { up: number; priv: number; mirror: number } => ({
    up: E().seeded.upstream.accessLog().length,
    priv: E().seeded.privateUpstream.accessLog().length,
    mirror: E().mirror.logs().length,
  });

  const repoDigests = async (d: Dockerd, image: string): Promise<string[]> =>
    JSON.parse((await d.docker(['image', 'inspect', '--format', '{{json .RepoDigests}}', image])).stdout) as string[];

  const assertRepoDigest = async (tt: Test, d: Dockerd, image: string, digest: string): Promise<void> => {
    const digests = await repoDigests(d, image);
    tt.ok(
      digests.some((r) => r.endsWith(`@${digest}`)),
      `docker image inspect ${image}: RepoDigests holds the upstream digest ${digest.slice(0, 19)}`,
      { repoDigests: digests },
    );
  };

  const privateRef = (): string => `${E().mirror.host}/${PRIVATE_NS}/${REFS.secret}`;

  t.test('client-config docker printed the daemon.json fragment and the docker.io-only note', async (t) => {
    const { daemonJson, mirror, note } = E();
    t.same(JSON.parse(daemonJson), { 'registry-mirrors': [mirror.url], 'insecure-registries': [mirror.host] });
    t.match(note, /docker\.io\) images only/);
  });

  t.test('dockerd runs with the generated daemon.json as --config-file', async (t) => {
    const d = D(t);
    if (!d) return;
    const { mirror } = E();
    const info = JSON.parse((await d.docker(['info', '--format', '{{json .RegistryConfig.Mirrors}}'])).stdout) as string[];
    t.same(info, [`${mirror.url}/`], 'dockerd loaded the mirror from the generated daemon.json');
  });

  t.test('docker pull library/alpine (Docker schema2, single-arch) goes through registry-mirrors', async (t) => {
    const d = D(t);
    if (!d) return;
    const m = marks();
    await d.docker(['pull', REFS.docker]);
    await assertRepoDigest(t, d, REFS.docker, images().docker.manifestDigest);
    const layers = JSON.parse(
      (await d.docker(['image', 'inspect', '--format', '{{json .RootFS.Layers}}', REFS.docker])).stdout,
    ) as string[];
    t.same(
      layers,
      images().docker.layers.map((l) => l.diffId),
      'the layers Docker extracted have the upstream diff_ids',
    );
    assertOnlyMirrorUpstream(t, E().seeded.upstream, m.up, repoOf(REFS.docker));
    await assertMirrorServed(t, E().mirror, m.mirror, { repository: repoOf(REFS.docker), namespace: 'docker.io', via: 'default' });
  });

  t.test('docker pull of an OCI image', async (t) => {
    const d = D(t);
    if (!d) return;
    const m = marks();
    await d.docker(['pull', REFS.oci]);
    await assertRepoDigest(t, d, REFS.oci, images().oci.manifestDigest);
    assertOnlyMirrorUpstream(t, E().seeded.upstream, m.up, repoOf(REFS.oci));
    await assertMirrorServed(t, E().mirror, m.mirror, { repository: repoOf(REFS.oci), namespace: 'docker.io', via: 'default' });
  });

  t.test('docker pull --platform linux/arm64 of a multi-arch index', async (t) => {
    const d = D(t);
    if (!d) return;
    const m = marks();
    await d.docker(['pull', '--platform', 'linux/arm64', REFS.multi]);
    await assertRepoDigest(t, d, REFS.multi, images().multi.manifestDigest);
    const arch = (await d.docker(['image', 'inspect', '--format', '{{.Os}}/{{.Architecture}}', REFS.multi])).stdout.trim();
    t.equal(arch, 'linux/arm64', 'the arm64 image was pulled');
    const arm = images().multi.images.find((i) => i.platform.architecture === 'arm64')!;
    const amd = images().multi.images.find((i) => i.platform.architecture === 'amd64')!;
    assertOnlyMirrorUpstream(t, E().seeded.upstream, m.up, repoOf(REFS.multi));
    const lines = await assertMirrorServed(t, E().mirror, m.mirror, {
      repository: repoOf(REFS.multi),
      namespace: 'docker.io',
      via: 'default',
    });
    t.ok(
      lines.some((l) => l.path.endsWith(`/blobs/${arm.layers[0]!.digest}`)),
      'the arm64 layer came through the mirror',
    );
    t.notOk(
      lines.some((l) => l.path.endsWith(`/blobs/${amd.layers[0]!.digest}`)),
      'the amd64 layer was not requested',
    );
  });

  t.test('docker pull of a 3-level repository team/project/app', async (t) => {
    const d = D(t);
    if (!d) return;
    const m = marks();
    await d.docker(['pull', REFS.deep]);
    await assertRepoDigest(t, d, REFS.deep, images().deep.manifestDigest);
    assertOnlyMirrorUpstream(t, E().seeded.upstream, m.up, repoOf(REFS.deep));
    await assertMirrorServed(t, E().mirror, m.mirror, { repository: repoOf(REFS.deep), namespace: 'docker.io', via: 'default' });
  });

  t.test('docker pull of an image with a 104 MiB layer', async (t) => {
    const d = D(t);
    if (!d) return;
    const m = marks();
    await d.docker(['pull', REFS.large]);
    await assertRepoDigest(t, d, REFS.large, images().large.manifestDigest);
    const layers = JSON.parse((await d.docker(['image', 'inspect', '--format', '{{json .RootFS.Layers}}', REFS.large])).stdout) as string[];
    t.same(
      layers,
      images().large.layers.map((l) => l.diffId),
      'Docker extracted the layer and verified its diff_id',
    );
    t.equal(E().seeded.upstream.blobGets(images().large.layers[0]!.digest), 1, 'the upstream served the large layer once');
    assertOnlyMirrorUpstream(t, E().seeded.upstream, m.up, repoOf(REFS.large));
    await assertMirrorServed(t, E().mirror, m.mirror, { repository: repoOf(REFS.large), namespace: 'docker.io', via: 'default' });
  });

  t.test('docker pull MIRROR/private.example/team/secret: the htpasswd upstream through the path-prefix dialect', async (t) => {
    const d = D(t);
    if (!d) return;
    const m = marks();
    await d.docker(['pull', privateRef()]);
    await assertRepoDigest(t, d, privateRef(), images().secret.manifestDigest);
    assertOnlyMirrorUpstream(t, E().seeded.privateUpstream, m.priv, repoOf(REFS.secret));
    await assertMirrorServed(t, E().mirror, m.mirror, { repository: repoOf(REFS.secret), namespace: PRIVATE_NS, via: 'path' });
  });

  t.test('offline: upstreams stopped, images removed, Docker pulls everything again from the mirror alone', async (t) => {
    const d = D(t);
    if (!d) return;
    const { seeded, mirror } = E();
    await seeded.stopUpstreams();
    const down = await fetch(`${seeded.upstream.url}/v2/`, { signal: AbortSignal.timeout(2_000) }).then(
      () => 'answered',
      () => 'down',
    );
    t.equal(down, 'down', 'the open upstream no longer answers');
    const cases: [ref: string, digest: string, extra: string[]][] = [
      [REFS.docker, images().docker.manifestDigest, []],
      [REFS.oci, images().oci.manifestDigest, []],
      [REFS.multi, images().multi.manifestDigest, ['--platform', 'linux/arm64']],
      [REFS.deep, images().deep.manifestDigest, []],
      [REFS.large, images().large.manifestDigest, []],
      [privateRef(), images().secret.manifestDigest, []],
    ];
    const present = (await d.docker(['image', 'ls', '--quiet', '--no-trunc'])).stdout.split('\n').filter(Boolean);
    if (present.length > 0) await d.docker(['image', 'rm', '--force', ...new Set(present)]);
    t.same((await d.docker(['image', 'ls', '--all', '--quiet'])).stdout.trim(), '', 'Docker holds no image any more');
    const mark = mirror.logs().length;
    for (const [ref, digest, extra] of cases) {
      await d.docker(['pull', ...extra, ref]);
      await assertRepoDigest(t, d, ref, digest);
    }
    const lines = mirrorRequests(mirror, mark);
    t.ok(lines.length > 0, 'the mirror served the offline pulls');
    t.same(
      lines.filter((l) => l.status >= 400).map((l) => `${l.method} ${l.path} ${l.status}`),
      [],
      'no request failed',
    );
    t.ok(
      lines.some((l) => l.path.includes('/blobs/') && l.cache === 'hit'),
      'blobs came from the cache',
    );
  });
}
