/**
 * containerd (Debian 1.6, a private daemon) pulls through the mirror with the hosts.toml files that
 * `oci-registry client-config containerd` writes: containerd sends `?ns=<registry>` to the mirror host.
 *
 * Upstreams are CNCF distribution registries seeded by harness/seed.ts; the mirror maps docker.io and
 * private.example (htpasswd, credentials in the mirror config) to them. Every pull asserts the image
 * digest containerd recorded, that the upstream saw only the mirror's User-Agent, and that the mirror's
 * request log shows the pull resolved via `ns`. Finally the upstreams are stopped and a fresh containerd
 * pulls everything again from the mirror's cache alone.
 */
import t, { type Test } from 'tap';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { requireBinaries } from './harness/binaries.js';
import { parseImagesCheck, parseImagesLs, startContainerd, type Containerd } from './harness/containerd.js';
import {
  assertMirrorServed,
  assertOnlyMirrorUpstream,
  hashFile,
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
  hostsDir: string;
  clientConfigStderr: string;
}

if (requireBinaries(t, ['containerd', 'ctr', 'skopeo', 'docker-registry', 'htpasswd']) && requireRoot(t, 'the containerd e2e test')) {
  let seeded: Seeded | undefined;
  let mirror: MirrorProcess | undefined;
  let env: Env | undefined;
  let ctd: Containerd | undefined;
  const E = (): Env => {
    if (!env) throw new Error('setup failed (see the before hook)');
    return env;
  };
  const C = (): Containerd => {
    if (!ctd) throw new Error('containerd did not start (see the before hook)');
    return ctd;
  };

  t.before(async () => {
    seeded = await seedUpstreams('containerd-test');
    mirror = await startSeededMirror(seeded);
    const hostsDir = join(seeded.work, 'certs.d');
    // The command under test writes what containerd reads; the namespaces default to those of the
    // mirror's own upstream config (docker.io and private.example).
    const upstreamConfig = join(seeded.work, 'upstreams.yaml');
    await writeFile(upstreamConfig, seeded.configYaml);
    const { stderr } = await runClientConfig(
      ['containerd', '--mirror', mirror.url, '--dir', hostsDir],
      ['--upstream-config-file', upstreamConfig],
    );
    env = { seeded, mirror, hostsDir, clientConfigStderr: stderr };
    ctd = await startContainerd();
    if (ctd.snapshotterNote) t.comment(ctd.snapshotterNote);
    t.comment(`containerd snapshotter: ${ctd.snapshotter}`);
  });

  t.teardown(async () => {
    await ctd?.stop();
    await mirror?.stop();
    await seeded?.cleanup();
  });

  const ref = (repoTag: string, ns = 'docker.io'): string => `${ns}/${repoTag}`;

  const pull = async (c: Containerd, image: string, extra: string[] = []): Promise<string> => {
    const { stdout } = await c.ctr(['images', 'pull', '--hosts-dir', E().hostsDir, ...extra, image], 300_000);
    return stdout;
  };

  /** The digest containerd recorded for `image` (ctr images ls). */
  const recordedDigest = async (c: Containerd, image: string): Promise<string | undefined> => {
    const rows = parseImagesLs((await c.ctr(['images', 'ls'])).stdout);
    return rows.find((r) => r.ref === image)?.digest;
  };

  /**
   * Asserts `ctr images check` (which judges the default platform, linux/amd64): all content present and
   * unpacked into the snapshotter.
   */
  const assertCompleteAndUnpacked = async (tt: Test, c: Containerd, image: string): Promise<void> => {
    // Filtered to the one image: check exits 1 when any listed image lacks linux/amd64 content (the arm64 pull).
    const { stdout } = await c.ctr(['images', 'check', `name==${JSON.stringify(image)}`]);
    const row = parseImagesCheck(stdout).find((r) => r.ref === image);
    tt.match(row?.status ?? stdout, /^complete/, `${image}: all content present (ctr images check)`);
    tt.equal(row?.unpacked, 'true', `${image}: unpacked into the ${c.snapshotter} snapshotter`);
  };

  /** Mounts the unpacked image (read-only snapshot view), returns the text of `files`, unmounts. */
  const readFromImage = async (c: Containerd, image: string, files: string[], platform?: string): Promise<string[]> => {
    const target = join(c.dir, 'mnt', image.replace(/[^a-z0-9]+/gi, '-'));
    await mkdir(target, { recursive: true });
    await c.ctr(['images', 'mount', ...(platform ? ['--platform', platform] : []), image, target]);
    try {
      return await Promise.all(files.map((f) => readFile(join(target, f), 'utf8').catch((e: Error) => `unreadable: ${e.message}`)));
    } finally {
      await c.ctr(['images', 'unmount', '--rm', target]);
    }
  };

  const marks = (): { up: number; priv: number; mirror: number } => ({
    up: E().seeded.upstream.accessLog().length,
    priv: E().seeded.privateUpstream.accessLog().length,
    mirror: E().mirror.logs().length,
  });

  const images = (): SeedImages => E().seeded.images;

  t.test('client-config containerd wrote one hosts.toml per namespace: mirror host first, the registry as server', async (t) => {
    const { hostsDir, mirror, clientConfigStderr } = E();
    const hub = await readFile(join(hostsDir, 'docker.io', 'hosts.toml'), 'utf8');
    t.match(hub, /^server = "https:\/\/registry-1\.docker\.io"$/m);
    t.match(hub, new RegExp(`^\\[host\\."${mirror.url.replace(/\./g, '\\.')}"\\]$`, 'm'));
    t.match(hub, /capabilities = \["pull", "resolve"\]/);
    t.same((await readdir(hostsDir)).sort(), ['docker.io', PRIVATE_NS].sort(), 'one directory per namespace of the upstream config');
    const priv = await readFile(join(hostsDir, PRIVATE_NS, 'hosts.toml'), 'utf8');
    t.match(priv, /^server = "https:\/\/private\.example"$/m);
    t.match(clientConfigStderr, /config_path/);
  });

  t.test('ctr pull of a Docker schema2 image: recorded digest, unpacked, layer files readable, requests sent with ns=', async (t) => {
    const c = C();
    const m = marks();
    const image = ref(REFS.docker);
    await pull(c, image);
    t.equal(await recordedDigest(c, image), images().docker.manifestDigest, 'ctr images ls shows the upstream digest');
    await assertCompleteAndUnpacked(t, c, image);
    const [l0, l1] = await readFromImage(c, image, ['layer-0/info.txt', 'layer-1/info.txt']);
    t.equal(l0, 'layer 0 of image seed 101 (linux/amd64)\n', 'a file of layer 0 in the mounted snapshot');
    t.equal(l1, 'layer 1 of image seed 101 (linux/amd64)\n', 'a file of layer 1 in the mounted snapshot');
    assertOnlyMirrorUpstream(t, E().seeded.upstream, m.up, repoOf(REFS.docker));
    await assertMirrorServed(t, E().mirror, m.mirror, { repository: repoOf(REFS.docker), namespace: 'docker.io', via: 'ns' });
  });

  t.test('ctr pull of an OCI image', async (t) => {
    const c = C();
    const m = marks();
    const image = ref(REFS.oci);
    await pull(c, image);
    t.equal(await recordedDigest(c, image), images().oci.manifestDigest, 'ctr images ls shows the upstream digest');
    await assertCompleteAndUnpacked(t, c, image);
    assertOnlyMirrorUpstream(t, E().seeded.upstream, m.up, repoOf(REFS.oci));
    await assertMirrorServed(t, E().mirror, m.mirror, { repository: repoOf(REFS.oci), namespace: 'docker.io', via: 'ns' });
  });

  t.test('ctr pull --platform linux/arm64 of a multi-arch index fetches the arm64 image only', async (t) => {
    const c = C();
    const m = marks();
    const image = ref(REFS.multi);
    await pull(c, image, ['--platform', 'linux/arm64']);
    const arm = images().multi.images.find((i) => i.platform.architecture === 'arm64')!;
    const amd = images().multi.images.find((i) => i.platform.architecture === 'amd64')!;
    t.equal(await recordedDigest(c, image), images().multi.manifestDigest, 'the image points at the index');
    const content = (await c.ctr(['content', 'ls', '-q'])).stdout.split('\n');
    t.ok(content.includes(arm.manifestDigest), 'the arm64 manifest was fetched');
    t.ok(content.includes(arm.layers[0]!.digest), 'the arm64 layer was fetched');
    t.notOk(content.includes(amd.layers[0]!.digest), 'the amd64 layer was not fetched');
    const [info] = await readFromImage(c, image, ['layer-0/info.txt'], 'linux/arm64');
    t.equal(info, 'layer 0 of image seed 104 (linux/arm64)\n', 'the arm64 snapshot holds the arm64 layer');
    assertOnlyMirrorUpstream(t, E().seeded.upstream, m.up, repoOf(REFS.multi));
    const lines = await assertMirrorServed(t, E().mirror, m.mirror, { repository: repoOf(REFS.multi), namespace: 'docker.io', via: 'ns' });
    t.ok(
      lines.some((l) => l.path.endsWith(`/manifests/${arm.manifestDigest}`)),
      'the arm64 manifest came by digest through the mirror',
    );
  });

  t.test('ctr pull of a 3-level repository team/project/app', async (t) => {
    const c = C();
    const m = marks();
    const image = ref(REFS.deep);
    await pull(c, image);
    t.equal(await recordedDigest(c, image), images().deep.manifestDigest, 'ctr images ls shows the upstream digest');
    await assertCompleteAndUnpacked(t, c, image);
    assertOnlyMirrorUpstream(t, E().seeded.upstream, m.up, repoOf(REFS.deep));
    await assertMirrorServed(t, E().mirror, m.mirror, { repository: repoOf(REFS.deep), namespace: 'docker.io', via: 'ns' });
  });

  t.test('ctr pull of an image with a 104 MiB layer: unpacked (containerd checks the diff_id)', async (t) => {
    const c = C();
    const m = marks();
    const image = ref(REFS.large);
    await pull(c, image);
    t.equal(await recordedDigest(c, image), images().large.manifestDigest, 'ctr images ls shows the upstream digest');
    await assertCompleteAndUnpacked(t, c, image);
    const layer = images().large.layers[0]!;
    const blob = join(c.dir, 'root', 'io.containerd.content.v1.content', 'blobs', 'sha256', layer.digest.slice('sha256:'.length));
    t.equal(
      await hashFile(blob).catch((e: Error) => e.message),
      layer.digest,
      "the layer in containerd's content store hashes to its digest",
    );
    t.equal(E().seeded.upstream.blobGets(layer.digest), 1, 'the upstream served the large layer once');
    assertOnlyMirrorUpstream(t, E().seeded.upstream, m.up, repoOf(REFS.large));
    await assertMirrorServed(t, E().mirror, m.mirror, { repository: repoOf(REFS.large), namespace: 'docker.io', via: 'ns' });
  });

  t.test('ctr pull from the htpasswd upstream (private.example): the mirror logs in, containerd sends no credentials', async (t) => {
    const c = C();
    const m = marks();
    const image = ref(REFS.secret, PRIVATE_NS);
    await pull(c, image);
    t.equal(await recordedDigest(c, image), images().secret.manifestDigest, 'ctr images ls shows the upstream digest');
    await assertCompleteAndUnpacked(t, c, image);
    assertOnlyMirrorUpstream(t, E().seeded.privateUpstream, m.priv, repoOf(REFS.secret));
    await assertMirrorServed(t, E().mirror, m.mirror, { repository: repoOf(REFS.secret), namespace: PRIVATE_NS, via: 'ns' });
  });

  t.test('offline: upstreams stopped, a fresh containerd pulls every image again from the mirror alone', async (t) => {
    const { seeded, mirror } = E();
    await seeded.stopUpstreams();
    const down = await fetch(`${seeded.upstream.url}/v2/`, { signal: AbortSignal.timeout(2_000) }).then(
      () => 'answered',
      () => 'down',
    );
    t.equal(down, 'down', 'the open upstream no longer answers');
    await C().stop();
    ctd = await startContainerd();
    const c = ctd;
    const mark = mirror.logs().length;
    const cases: [string, string, string[]][] = [
      [ref(REFS.docker), images().docker.manifestDigest, []],
      [ref(REFS.oci), images().oci.manifestDigest, []],
      [ref(REFS.multi), images().multi.manifestDigest, ['--platform', 'linux/arm64']],
      [ref(REFS.deep), images().deep.manifestDigest, []],
      [ref(REFS.large), images().large.manifestDigest, []],
      [ref(REFS.secret, PRIVATE_NS), images().secret.manifestDigest, []],
    ];
    t.same(parseImagesLs((await c.ctr(['images', 'ls'])).stdout), [], 'the new containerd starts empty');
    for (const [image, digest, extra] of cases) {
      await pull(c, image, extra);
      t.equal(await recordedDigest(c, image), digest, `${image} has the upstream digest`);
      if (extra.length === 0) await assertCompleteAndUnpacked(t, c, image);
      else {
        const [info] = await readFromImage(c, image, ['layer-0/info.txt'], 'linux/arm64');
        t.equal(info, 'layer 0 of image seed 104 (linux/arm64)\n', `${image}: the arm64 snapshot is unpacked`);
      }
    }
    const lines = mirrorRequests(mirror, mark);
    t.ok(lines.length > 0, 'the mirror served the offline pulls');
    t.same(
      lines.filter((l) => l.status >= 400 && !(l.method === 'GET' && l.path === '/v2/')).map((l) => `${l.method} ${l.path} ${l.status}`),
      [],
      'no request failed',
    );
    t.ok(
      lines.every((l) => l.path === '/v2/' || l.via === 'ns'),
      'every offline request came with ns=',
    );
    t.ok(
      lines.some((l) => l.path.includes('/blobs/') && l.cache === 'hit'),
      'blobs came from the cache',
      { sample: lines.slice(0, 5) },
    );
  });
}
