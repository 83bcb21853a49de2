/**
 * End to end: referrers from a real upstream without the referrers API. Debian's docker-registry (CNCF
 * distribution 2.8) answers 404 to /v2/<name>/referrers/<digest>, as GHCR does; clients that push
 * signatures and SBOMs to such a registry (oras, notation, cosign in OCI 1.1 mode) also maintain the
 * referrers tag schema: an image index at tag `sha256-<hex of subject>` listing the referrers.
 *
 * The test pushes, over plain HTTP as those clients do, an image, two artifacts whose `subject` is that
 * image (a signature and an SBOM) and the tag-schema index; then asks the built mirror (`node
 * dist/cli/main.js`) for the referrers of the image in every dialect a client uses: containerd's `?ns=`,
 * cri-o/podman's path prefix `/v2/127.0.0.1:<port>/...`, and Docker's plain path (default namespace
 * docker.io, mapped to the same upstream). Each must list both artifacts, filter by `artifactType` with
 * `OCI-Filters-Applied`, and keep answering from the cache once the upstream is stopped.
 */
import t, { type Test } from 'tap';
import { join } from 'node:path';
import { rm } from 'node:fs/promises';
import { makeImage, MEDIA_TYPES, sha256, type Image } from '../fixtures/images.js';
import { startMirrorProcess, type MirrorProcess } from '../helpers/mirror-process.js';
import { requireBinaries } from './harness/binaries.js';
import { startDockerRegistry, type AccessLogEntry, type DockerRegistry } from './harness/registry.js';
import { pushBlob, pushManifest } from './harness/push.js';
import { makeTempDir } from './harness/util.js';

const MIRROR_UA = 'oci-registry-e2e-referrers';
const REPO = 'team/signed';
const SIG = 'application/vnd.example.signature.v1';
const SBOM = 'application/vnd.example.sbom.v1';
const EMPTY_CONFIG = { mediaType: 'application/vnd.oci.empty.v1+json', bytes: Buffer.from('{}') };
const STALE = '110 - "Response is Stale"';

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

interface Pushed {
  subject: Image;
  sig: Descriptor;
  sbom: Descriptor;
  /** The tag-schema index: its tag, digest and bytes. */
  tag: string;
  indexDigest: string;
  indexBytes: Buffer;
}

interface Env {
  upstream: DockerRegistry;
  work: string;
  pushed: Pushed;
  configYaml: string;
  /** Replaced when a test restarts the mirror. */
  mirror: MirrorProcess;
}

/** An artifact manifest (OCI 1.1: artifactType, empty config, one blob) whose subject is `subject`. */
async function pushArtifact(registry: DockerRegistry, subject: Image, artifactType: string, content: string): Promise<Descriptor> {
  const blob = Buffer.from(content);
  await pushBlob(registry, REPO, blob);
  const annotations = { 'org.opencontainers.image.created': '2026-01-01T00:00:00Z' };
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociManifest,
      artifactType,
      config: { mediaType: EMPTY_CONFIG.mediaType, digest: sha256(EMPTY_CONFIG.bytes), size: EMPTY_CONFIG.bytes.length },
      layers: [{ mediaType: `${artifactType}+blob`, digest: sha256(blob), size: blob.length }],
      subject: { mediaType: subject.mediaType, digest: subject.manifestDigest, size: subject.manifest.length },
      annotations,
    }),
  );
  const digest = await pushManifest(registry, REPO, sha256(manifest), manifest, MEDIA_TYPES.ociManifest);
  return { mediaType: MEDIA_TYPES.ociManifest, digest, size: manifest.length, artifactType, annotations };
}

async function seed(registry: DockerRegistry): Promise<Pushed> {
  const subject = await makeImage({ format: 'oci', layers: 1, layerSize: 8 << 10, seed: 1201 });
  for (const blob of [subject.config, ...subject.layers.map((l) => l.bytes)]) await pushBlob(registry, REPO, blob);
  await pushManifest(registry, REPO, 'v1', subject.manifest, subject.mediaType);
  await pushBlob(registry, REPO, EMPTY_CONFIG.bytes);
  const sig = await pushArtifact(registry, subject, SIG, 'a signature');
  const sbom = await pushArtifact(registry, subject, SBOM, '{"sbom":true}');
  const tag = subject.manifestDigest.replace(':', '-');
  const indexBytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests: [sig, sbom] }));
  const indexDigest = await pushManifest(registry, REPO, tag, indexBytes, MEDIA_TYPES.ociIndex);
  return { subject, sig, sbom, tag, indexDigest, indexBytes };
}

if (requireBinaries(t, ['docker-registry'])) {
  let env: Env | undefined;
  let setup: Promise<Env> | undefined;
  /** Awaited by each test, so that a setup failure fails the tests with its message. */
  const E = (): Promise<Env> => {
    if (!setup) throw new Error('setup did not run');
    return setup;
  };

  t.before(async () => {
    setup = (async (): Promise<Env> => {
      const work = await makeTempDir('referrers-test');
      const upstream = await startDockerRegistry();
      env = { upstream, work } as Env;
      const pushed = await seed(upstream);
      // docker.io (the default namespace: Docker's plain paths) trusts tags for the default 14 days; the
      // host:port namespace (?ns= and path prefix) re-checks every time, so its answers go stale at once.
      const configYaml = [
        { namespace: 'docker.io', extra: [] as string[] },
        { namespace: upstream.host, extra: ['  manifest_invalidation_time: 0s'] },
      ]
        .map((u) =>
          [
            `- namespace: ${JSON.stringify(u.namespace)}`,
            `  host: ${JSON.stringify(upstream.host)}`,
            '  tls: false',
            `  user_agent: ${MIRROR_UA}`,
            ...u.extra,
          ].join('\n'),
        )
        .join('\n');
      const mirror = await startMirrorProcess({ root: join(work, 'cache'), configYaml });
      env = { upstream, work, pushed, configYaml, mirror };
      return env;
    })();
    setup.catch(() => undefined); // reported by the tests
  });

  t.teardown(async () => {
    await setup?.catch(() => undefined);
    if (!env) return;
    await env.mirror?.stop();
    await env.upstream.stop();
    if (!process.env.OCI_E2E_KEEP) await rm(env.work, { recursive: true, force: true });
  });

  const dialects = (e: Env): { name: string; path: (rest: string, query?: string) => string }[] => {
    const withQuery = (base: string, query: string | undefined, ns?: string): string => {
      const params = new URLSearchParams();
      if (ns) params.set('ns', ns);
      if (query) params.set('artifactType', query);
      const qs = params.toString();
      return qs ? `${base}?${qs}` : base;
    };
    return [
      { name: `?ns=${e.upstream.host}`, path: (rest, q) => withQuery(`/v2/${REPO}/${rest}`, q, e.upstream.host) },
      { name: `path prefix /v2/${e.upstream.host}/`, path: (rest, q) => withQuery(`/v2/${e.upstream.host}/${REPO}/${rest}`, q) },
      { name: 'default namespace (docker.io)', path: (rest, q) => withQuery(`/v2/${REPO}/${rest}`, q) },
    ];
  };

  interface Answer {
    status: number;
    contentType: string | null;
    filters: string | null;
    warning: string | null;
    body: { schemaVersion?: number; mediaType?: string; manifests?: Descriptor[]; errors?: unknown[] };
  }

  const ask = async (mirror: MirrorProcess, path: string): Promise<Answer> => {
    const res = await fetch(`${mirror.url}${path}`, { signal: AbortSignal.timeout(30_000) });
    return {
      status: res.status,
      contentType: res.headers.get('content-type'),
      filters: res.headers.get('oci-filters-applied'),
      warning: res.headers.get('warning'),
      body: (await res.json()) as Answer['body'],
    };
  };

  /** Asserts the full and the two filtered answers of one dialect; `stale` for the Warning header. */
  const assertLists = async (tt: Test, e: Env, dialect: ReturnType<typeof dialects>[number], warning: string | null): Promise<void> => {
    const { sig, sbom, subject } = e.pushed;
    const rest = `referrers/${subject.manifestDigest}`;
    const all = await ask(e.mirror, dialect.path(rest));
    tt.equal(all.status, 200, `${dialect.name}: status`, { body: all.body });
    tt.equal(all.contentType, MEDIA_TYPES.ociIndex, `${dialect.name}: Content-Type`);
    tt.equal(all.body.schemaVersion, 2);
    tt.equal(all.body.mediaType, MEDIA_TYPES.ociIndex);
    tt.same(all.body.manifests, [sig, sbom], `${dialect.name}: both referrers, as the tag-schema index lists them`);
    tt.equal(all.filters, null, `${dialect.name}: no filter applied`);
    tt.equal(all.warning, warning, `${dialect.name}: Warning`);
    for (const [artifactType, expected] of [
      [SIG, [sig]],
      [SBOM, [sbom]],
      ['application/vnd.example.none', []],
    ] as const) {
      const filtered = await ask(e.mirror, dialect.path(rest, artifactType));
      tt.equal(filtered.status, 200, `${dialect.name} artifactType=${artifactType}: status`);
      tt.equal(filtered.filters, 'artifactType', `${dialect.name} artifactType=${artifactType}: OCI-Filters-Applied`);
      tt.same(filtered.body.manifests, expected, `${dialect.name} artifactType=${artifactType}: the matching referrers`);
    }
  };

  const upstreamSince = (e: Env, mark: number): AccessLogEntry[] => e.upstream.accessLog().slice(mark);

  t.test('the upstream (distribution 2.8) has no referrers API: it answers 404', async (t) => {
    const e = await E();
    const res = await fetch(`${e.upstream.url}/v2/${REPO}/referrers/${e.pushed.subject.manifestDigest}`);
    await res.arrayBuffer();
    t.equal(res.status, 404, 'this test needs an upstream without the API');
    const tag = await fetch(`${e.upstream.url}/v2/${REPO}/manifests/${e.pushed.tag}`, { headers: { accept: MEDIA_TYPES.ociIndex } });
    t.equal(sha256(Buffer.from(await tag.arrayBuffer())), e.pushed.indexDigest, 'and holds the tag-schema index as pushed');
  });

  t.test('every dialect lists the referrers from the tag schema, filtered by artifactType', async (t) => {
    const e = await E();
    const mark = e.upstream.accessLog().length;
    for (const dialect of dialects(e)) await t.test(dialect.name, async (tt) => assertLists(tt, e, dialect, null));
    const entries = upstreamSince(e, mark);
    const lines = entries.map((l) => `${l.method} ${l.url} ${l.status} ${l.userAgent}`);
    t.same(
      entries.filter((l) => l.userAgent !== MIRROR_UA).map((l) => l.line),
      [],
      'only the mirror talked to the upstream',
    );
    t.ok(
      entries.some((l) => l.path === `/v2/${REPO}/referrers/${e.pushed.subject.manifestDigest}` && l.status === 404),
      'the mirror asked the API first',
      { lines },
    );
    t.ok(
      entries.some((l) => l.method === 'GET' && l.path === `/v2/${REPO}/manifests/${e.pushed.tag}` && l.status === 200),
      'then fetched the tag',
      { lines },
    );
    t.same(
      entries.filter((l) => l.url.includes('ns=')).map((l) => l.url),
      [],
      'ns is never forwarded',
    );
  });

  t.test('the tag-schema index is pullable through the mirror as a manifest, byte for byte', async (t) => {
    const e = await E();
    for (const dialect of dialects(e)) {
      const res = await fetch(`${e.mirror.url}${dialect.path(`manifests/${e.pushed.tag}`)}`, { headers: { accept: MEDIA_TYPES.ociIndex } });
      t.equal(res.status, 200, dialect.name);
      t.equal(res.headers.get('docker-content-digest'), e.pushed.indexDigest, `${dialect.name}: digest`);
      t.same(Buffer.from(await res.arrayBuffer()), e.pushed.indexBytes, `${dialect.name}: bytes`);
    }
  });

  t.test('with the upstream stopped, every dialect still lists the referrers from the cache', async (t) => {
    const e = await E();
    await e.upstream.stop();
    const probe = await fetch(`${e.upstream.url}/v2/`).then(
      () => 'answered',
      () => 'down',
    );
    t.equal(probe, 'down', 'the upstream is down');
    for (const dialect of dialects(e)) {
      // The host:port namespace re-checks tags every time: served stale. docker.io's tag is still fresh.
      const warning = dialect.name.startsWith('default') ? null : STALE;
      await t.test(dialect.name, async (tt) => assertLists(tt, e, dialect, warning));
    }
    const uncached = await ask(e.mirror, dialects(e)[0]!.path(`referrers/${sha256('never asked')}`));
    t.equal(uncached.status, 503, 'a subject never asked for is an outage error, not an empty index');
  });

  t.test('restarted with the upstream still down, and restarted --offline, the mirror answers from its stored cache', async (t) => {
    const e = await E();
    for (const offline of [false, true]) {
      await e.mirror.stop();
      e.mirror = await startMirrorProcess({ root: join(e.work, 'cache'), configYaml: e.configYaml, args: offline ? ['--offline'] : [] });
      for (const dialect of dialects(e)) {
        // Offline, the cache is served whatever its age and without a Warning; online, an expired tag is stale.
        const warning = offline || dialect.name.startsWith('default') ? null : STALE;
        await t.test(`${offline ? '--offline' : 'restarted'}: ${dialect.name}`, async (tt) => assertLists(tt, e, dialect, warning));
      }
    }
    const uncached = await ask(e.mirror, dialects(e)[0]!.path(`referrers/${sha256('never asked')}`));
    t.equal(uncached.status, 200, '--offline: a subject never cached is the empty index');
    t.same(uncached.body.manifests, []);
  });
}
