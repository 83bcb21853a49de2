/**
 * The path-prefix dialect for a registry whose name has a port (#12): the upstream is Debian's
 * docker-registry, named by clients as `127.0.0.1:<port>`. Image references allow no `:` inside a path,
 * so a mirror location `<mirror>/127.0.0.1:<port>` is refused by containers/image; `client-config crio`
 * writes `<mirror>/127.0.0.1_<port>` instead, which the mirror reads back as namespace `127.0.0.1:<port>`.
 *
 * skopeo and podman (private storage and registries.conf) pull `127.0.0.1:<port>/...` with the real
 * generated registries.conf. Each pull must reach the mirror (its request log, with the namespace and
 * the `_<port>` path), the upstream must see only the mirror (its access log's User-Agent: a client
 * falling back to the registry itself would show up there), and the digests must be the upstream's.
 */
import t, { type Test } from 'tap';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeImage, writeDirTransport, writeOciLayout, type Image } from '../fixtures/images.js';
import { startMirrorProcess, type MirrorProcess } from '../helpers/mirror-process.js';
import { requireBinaries } from './harness/binaries.js';
import { assertPodmanImage, makePodman, type Podman } from './harness/podman.js';
import { startDockerRegistry, type DockerRegistry } from './harness/registry.js';
import { copy, inspectRaw, pushDir, pushLayout } from './harness/skopeo.js';
import {
  assertDirHoldsImage,
  assertMirrorServed,
  assertOnlyMirrorUpstream,
  MIRROR_UA,
  mirrorRequests,
  repoOf,
  runClientConfig,
  sha256Hex,
} from './harness/seed.js';
import { makeTempDir } from './harness/util.js';

const REFS = { docker: 'library/alpine:3.19', oci: 'team/app:v1' } as const;

interface Env {
  work: string;
  upstream: DockerRegistry;
  mirror: MirrorProcess;
  images: { docker: Image; oci: Image };
  /** `127.0.0.1:<port>`: the namespace, as clients name the registry. */
  namespace: string;
  /** `127.0.0.1_<port>`: how the mirror path spells it. */
  segment: string;
  /** The manifest digests the upstream itself reports (Docker-Content-Digest), by REFS key. */
  upstreamDigests: { docker: string; oci: string };
  /** `unqualified-search-registries = []` + the client-config crio output. */
  registriesConf: string;
  generated: { stdout: string; stderr: string };
}

async function upstreamDigest(upstream: DockerRegistry, ref: string): Promise<string> {
  const colon = ref.lastIndexOf(':');
  const res = await fetch(`${upstream.url}/v2/${ref.slice(0, colon)}/manifests/${ref.slice(colon + 1)}`, {
    method: 'HEAD',
    headers: { accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' },
  });
  const digest = res.headers.get('docker-content-digest');
  if (res.status !== 200 || !digest) throw new Error(`upstream HEAD ${ref}: ${res.status}`);
  return digest;
}

if (requireBinaries(t, ['skopeo', 'docker-registry'])) {
  let env: Env | undefined;
  const cleanups: (() => Promise<void>)[] = [];
  const E = (): Env => {
    if (!env) throw new Error('setup failed (see the before hook)');
    return env;
  };

  t.before(async () => {
    const work = await makeTempDir('crio-hostport');
    cleanups.push(() => (process.env.OCI_E2E_KEEP ? Promise.resolve() : rm(work, { recursive: true, force: true })));
    const upstream = await startDockerRegistry();
    cleanups.push(() => upstream.stop());
    const images = {
      docker: await makeImage({ format: 'docker', layers: 2, layerSize: 128 << 10, seed: 1201 }),
      oci: await makeImage({ format: 'oci', layers: 2, layerSize: 96 << 10, seed: 1202 }),
    };
    // skopeo 1.9 skips Docker media types in an OCI layout: the schema2 image goes through dir:.
    await writeDirTransport(join(work, 'dir-docker'), images.docker);
    await pushDir(join(work, 'dir-docker'), `${upstream.host}/${REFS.docker}`);
    await writeOciLayout(join(work, 'layout'), [{ ref: 'oci', image: images.oci }]);
    await pushLayout(join(work, 'layout'), 'oci', `${upstream.host}/${REFS.oci}`);
    const upstreamDigests = { docker: await upstreamDigest(upstream, REFS.docker), oci: await upstreamDigest(upstream, REFS.oci) };

    const namespace = upstream.host;
    const configYaml = [
      `- namespace: ${JSON.stringify(namespace)}`,
      `  host: ${JSON.stringify(upstream.host)}`,
      '  tls: false',
      `  user_agent: ${MIRROR_UA}`,
      '',
    ].join('\n');
    const configFile = join(work, 'upstreams.yaml');
    await writeFile(configFile, configYaml);
    const mirror = await startMirrorProcess({ root: join(work, 'cache'), configYaml });
    cleanups.push(async () => {
      await mirror.stop();
    });
    // The command under test writes what skopeo and podman read; its namespaces come from the config file.
    const generated = await runClientConfig(['crio', '--mirror', mirror.host], ['--upstream-config-file', configFile]);
    const registriesConf = join(work, 'registries.conf');
    await writeFile(registriesConf, `unqualified-search-registries = []\n\n${generated.stdout}`);
    await mkdir(join(work, 'out'), { recursive: true });
    env = { work, upstream, mirror, images, namespace, segment: `127.0.0.1_${upstream.port}`, upstreamDigests, registriesConf, generated };
  });

  t.teardown(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  const marks = (): { up: number; mirror: number } => ({ up: E().upstream.accessLog().length, mirror: E().mirror.logs().length });
  const opts = () => ({ registriesConf: E().registriesConf });
  const ref = (key: keyof typeof REFS): string => `docker://${E().namespace}/${REFS[key]}`;

  /** Every request of the pull after `mark` named the namespace as the `_<port>` path prefix. */
  const assertUnderscorePaths = (tt: Test, mark: number, key: keyof typeof REFS): void => {
    const paths = mirrorRequests(E().mirror, mark)
      .filter((l) => l.repository === repoOf(REFS[key]))
      .map((l) => l.path);
    tt.ok(
      paths.length > 0 && paths.every((p) => p.startsWith(`/v2/${E().segment}/${repoOf(REFS[key])}/`)),
      `the client sent /v2/${E().segment}/...`,
      { paths },
    );
  };

  t.test('client-config crio writes the mirror location <mirror>/127.0.0.1_<port>, without notes', async (t) => {
    const { generated, mirror, namespace, segment } = E();
    t.match(generated.stdout, `prefix = "${namespace}"\nlocation = "${namespace}"`);
    t.match(generated.stdout, `location = "${mirror.host}/${segment}"\ninsecure = true`);
    t.notMatch(generated.stdout, `${mirror.host}/${namespace}`, 'never the colon form');
    t.equal(generated.stderr, '');
  });

  t.test('the colon form <mirror>/127.0.0.1:<port> is what the clients refuse (why the _<port> form exists)', async (t) => {
    const { work, mirror, namespace } = E();
    const colonConf = join(work, 'registries-colon.conf');
    const conf = `unqualified-search-registries = []\n\n[[registry]]\nprefix = "${namespace}"\nlocation = "${namespace}"\n\n[[registry.mirror]]\nlocation = "${mirror.host}/${namespace}"\ninsecure = true\n`;
    await writeFile(colonConf, conf);
    await t.rejects(inspectRaw(ref('docker'), { registriesConf: colonConf }), /invalid reference format/);
  });

  t.test('skopeo inspect and copy of 127.0.0.1:<port>/library/alpine (schema2) go through the mirror', async (t) => {
    const m = marks();
    const raw = await inspectRaw(ref('docker'), opts());
    t.equal(sha256Hex(raw), E().upstreamDigests.docker, 'the raw manifest has the upstream digest');
    const dest = join(E().work, 'out', 'alpine');
    await copy(ref('docker'), `dir:${dest}`, opts());
    await assertDirHoldsImage(t, dest, E().images.docker);
    assertOnlyMirrorUpstream(t, E().upstream, m.up, repoOf(REFS.docker));
    await assertMirrorServed(t, E().mirror, m.mirror, { repository: repoOf(REFS.docker), namespace: E().namespace, via: 'path' });
    assertUnderscorePaths(t, m.mirror, 'docker');
  });

  const podmen: Podman[] = [];
  t.teardown(async () => {
    for (const p of podmen) await p.destroy();
  });

  t.test('podman pull 127.0.0.1:<port>/team/app (OCI) into private storage goes through the mirror', async (t) => {
    if (!requireBinaries(t, ['podman'])) return;
    const p = await makePodman('podman-hp', E().registriesConf);
    podmen.push(p);
    const m = marks();
    const name = `${E().namespace}/${REFS.oci}`;
    await p.run(['pull', name]);
    await assertPodmanImage(
      t,
      p,
      name,
      E().upstreamDigests.oci,
      E().images.oci.layers.map((l) => l.diffId),
    );
    t.equal(E().upstreamDigests.oci, E().images.oci.manifestDigest, 'the upstream holds the fixture bytes');
    assertOnlyMirrorUpstream(t, E().upstream, m.up, repoOf(REFS.oci));
    await assertMirrorServed(t, E().mirror, m.mirror, { repository: repoOf(REFS.oci), namespace: E().namespace, via: 'path' });
    assertUnderscorePaths(t, m.mirror, 'oci');
  });

  t.test('podman pull of the schema2 image skopeo fetched is served from the mirror cache', async (t) => {
    if (!requireBinaries(t, ['podman'])) return;
    const p = await makePodman('podman-hp2', E().registriesConf);
    podmen.push(p);
    const m = marks();
    const name = `${E().namespace}/${REFS.docker}`;
    await p.run(['pull', name]);
    await assertPodmanImage(
      t,
      p,
      name,
      E().upstreamDigests.docker,
      E().images.docker.layers.map((l) => l.diffId),
    );
    const lines = await assertMirrorServed(t, E().mirror, m.mirror, {
      repository: repoOf(REFS.docker),
      namespace: E().namespace,
      via: 'path',
    });
    t.ok(
      lines.some((l) => l.path.includes('/blobs/') && l.cache === 'hit'),
      'blobs came from the cache skopeo filled',
      {
        lines: lines.map((l) => `${l.method} ${l.path} ${l.cache}`),
      },
    );
    t.same(
      E()
        .upstream.accessLog()
        .slice(m.up)
        .filter((e) => e.path.includes('/blobs/'))
        .map((e) => e.line),
      [],
      'no blob was fetched from the upstream again',
    );
    assertOnlyMirrorUpstream(t, E().upstream, m.up);
    assertUnderscorePaths(t, m.mirror, 'docker');
  });
}
