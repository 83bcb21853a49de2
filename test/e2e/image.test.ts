/**
 * The container image, built from the real Dockerfile and run in a private dockerd (Debian docker.io
 * 20.10), on machines that reach no container registry: the base image is made here
 * (test/e2e/harness/base-image.ts: `debootstrap --variant=minbase bookworm` from the machine's apt
 * mirror plus the machine's Node.js) and passed with `--build-arg BASE_IMAGE=...`. The build context is
 * a clean copy of the repository's tracked files; the build and the containers use the host network
 * (the private dockerd has no bridge; `npm ci` in the build needs the npm registry).
 *
 * The container then: listens where --listen says, as uid/gid 10001; turns healthy through the image's
 * own HEALTHCHECK (run flags only shorten its interval); serves a skopeo pull from Debian's
 * docker-registry with the upstream's digests, caching into the /data volume as 10001, and serves it
 * again with the upstream stopped; cannot rewrite its own program; and stops on `docker stop` well
 * within the grace period with exit code 0 (the server handles SIGTERM; 143 would mean it died of the
 * signal, 137 that Docker had to SIGKILL it).
 *
 * Slow: a first run debootstraps (about 3-4 min, cached under the system temp dir for a week) and the
 * image build runs `npm ci` twice. Without dockerd or debootstrap (or root) this file is a loud skip,
 * and a failure when CI is set.
 */
import t, { type Test } from 'tap';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { makeImage, writeOciLayout, type Image } from '../fixtures/images.js';
import { REPO_ROOT } from '../helpers/mirror-process.js';
import { eventually } from '../helpers/eventually.js';
import { findSuiteSource, parseDeb822Sources, parseOneLineSources } from './harness/apt-sources.js';
import { buildNodeBaseImage, lddIn, minbaseRootTar } from './harness/base-image.js';
import { requireBinaries } from './harness/binaries.js';
import { trackedFilesCopy } from './harness/build-context.js';
import { startDockerd, type Dockerd } from './harness/dockerd.js';
import { startDockerRegistry, type DockerRegistry } from './harness/registry.js';
import { assertDirHoldsImage, assertOnlyMirrorUpstream, MIRROR_UA, requireRoot, run } from './harness/seed.js';
import { copy, pushLayout } from './harness/skopeo.js';
import { freePort, makeTempDir, sleep } from './harness/util.js';

const SUITE = 'bookworm';
const BASE_TAG = 'oci-e2e/node-base:bookworm';
const IMAGE_TAG = 'oci-e2e/oci-registry:image-test';
const REF = 'library/alpine:3.19';
/** `docker stop -t`: Docker's default grace period. */
const STOP_GRACE_S = 10;
/** Where the upstream YAML is mounted in the container. */
const CONFIG_IN_CONTAINER = '/etc/oci-registry/upstream.yaml';

// The file needs more than tap's 600 s on 2 busy cores (a cold debootstrap and two `npm ci` runs in the
// image build); this tells the runner too.
t.setTimeout(40 * 60_000);

t.test('apt sources: one-line and deb822 entries, the first with the suite and main is used', async (t) => {
  const deb822 = parseDeb822Sources(
    [
      'Types: deb deb-src',
      '# a comment',
      'URIs: http://deb.example/debian/',
      'Suites: bookworm bookworm-updates',
      'Components: main contrib',
      'Signed-By:',
      ' -----BEGIN PGP PUBLIC KEY BLOCK-----',
      ' .',
      ' -----END PGP PUBLIC KEY BLOCK-----',
      '',
      'Types: deb',
      'URIs: http://off.example/debian',
      'Suites: bookworm',
      'Components: main',
      'Enabled: no',
    ].join('\n'),
  );
  t.same(
    deb822,
    [{ uri: 'http://deb.example/debian', suites: ['bookworm', 'bookworm-updates'], components: ['main', 'contrib'] }],
    'an inline key is no keyring; Enabled: no is skipped',
  );
  const oneLine = parseOneLineSources(
    [
      'deb-src http://src.example/debian bookworm main',
      '# deb http://commented.example/debian bookworm main',
      'deb [arch=amd64 signed-by=/nonexistent.gpg] https://one.example/debian bookworm main',
    ].join('\n'),
  );
  t.same(
    oneLine,
    [{ uri: 'https://one.example/debian', suites: ['bookworm'], components: ['main'] }],
    'deb-src and comments skipped, options parsed',
  );
  const sources = [
    { uri: 'http://security.example/debian-security', suites: ['bookworm-security'], components: ['main'] },
    { uri: 'http://contrib.example/debian', suites: ['bookworm'], components: ['contrib'] },
    ...oneLine,
  ];
  t.equal(findSuiteSource('bookworm', sources)?.uri, 'https://one.example/debian');
  t.equal(findSuiteSource('trixie', sources), undefined);
});

t.test('the image from the Dockerfile on a local Debian base', async (t) => {
  if (
    !requireBinaries(t, ['dockerd', 'docker', 'debootstrap', 'skopeo', 'docker-registry']) ||
    !requireRoot(t, 'the image e2e test (debootstrap, dockerd)')
  )
    return;
  const source = findSuiteSource(SUITE);
  if (!source) {
    const reason = `NO APT SOURCE for ${SUITE} main in /etc/apt: debootstrap has no mirror to use`;
    if (process.env.CI) t.fail(reason);
    else {
      process.stderr.write(`# ${reason}\n`);
      t.plan(0, reason);
    }
    return;
  }

  const startedAt = performance.now();
  const timings: string[] = [];
  const timed = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      timings.push(`${what}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }
  };

  const containers: string[] = [];
  let dockerd: Dockerd | undefined;
  // eslint-disable-next-line prefer-const -- assigned below, after the teardown that reads it is registered
  let upstream: DockerRegistry | undefined;
  const work = await makeTempDir('image-test');
  t.teardown(async () => {
    for (const name of containers) await dockerd?.docker(['rm', '--force', '--volumes', name], 60_000).catch(() => undefined);
    await dockerd?.stop();
    await upstream?.stop();
    if (!process.env.OCI_E2E_KEEP) await rm(work, { recursive: true, force: true });
    timings.push(`whole file: ${((performance.now() - startedAt) / 1000).toFixed(1)} s`);
    process.stderr.write(`# image test timings: ${timings.join('; ')}\n`);
  });

  try {
    dockerd = await timed('dockerd start', () => startDockerd({ daemonJson: '{}\n' }));
  } catch (e) {
    const reason = `DOCKERD CANNOT RUN HERE: ${(e as Error).message}`;
    if (process.env.CI) t.fail(reason);
    else {
      process.stderr.write(`# ${reason}\n`);
      t.plan(0, reason.split('\n')[0]);
    }
    return;
  }
  const d = dockerd;
  t.comment(`dockerd storage driver: ${d.storageDriver}; apt source: ${source.uri}`);

  upstream = await startDockerRegistry();
  const image: Image = await makeImage({ format: 'oci', layers: 2, layerSize: 512 << 10, seed: 161 });
  await writeOciLayout(join(work, 'layout'), [{ ref: 'img', image }]);
  await pushLayout(join(work, 'layout'), 'img', `${upstream.host}/${REF}`);
  const configPath = join(work, 'upstream.yaml');
  await writeFile(
    configPath,
    [`- namespace: docker.io`, `  host: ${JSON.stringify(upstream.host)}`, '  tls: false', `  user_agent: ${MIRROR_UA}`, ''].join('\n'),
    { mode: 0o644 },
  );

  const inspect = async <T>(target: string, format: string): Promise<T> =>
    JSON.parse((await d.docker(['inspect', '--format', `{{json ${format}}}`, target], 30_000)).stdout) as T;
  const exec = async (name: string, cmd: string[]): Promise<string> => (await d.docker(['exec', name, ...cmd], 30_000)).stdout.trim();

  /** Starts the image detached on the host network; the name is removed with its volume in teardown. */
  const runContainer = async (name: string, port: number, healthUrl: string, health: string[]): Promise<void> => {
    containers.push(name);
    await d.docker(
      [
        'run',
        '--detach',
        '--name',
        name,
        '--network',
        'host',
        ...health,
        '--env',
        `HEALTHCHECK_URL=${healthUrl}`,
        '--volume',
        `${configPath}:${CONFIG_IN_CONTAINER}:ro`,
        IMAGE_TAG,
        '--listen',
        `127.0.0.1:${port}`,
        '--upstream-config-file',
        CONFIG_IN_CONTAINER,
        'filesystem',
        '--root',
        '/data',
      ],
      60_000,
    );
  };
  const waitServing = async (name: string, url: string): Promise<void> => {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const res = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(2_000) }).catch(() => undefined);
      await res?.arrayBuffer().catch(() => undefined);
      if (res?.status === 200) return;
      const running = await inspect<boolean>(name, '.State.Running');
      if (!running || Date.now() > deadline) {
        const logs = await d.docker(['logs', '--tail', '40', name]).catch((e: Error) => ({ stdout: e.message, stderr: '' }));
        throw new Error(`container ${name} ${running ? 'did not answer' : 'exited'} at ${url}/v2/:\n${logs.stdout}${logs.stderr}`);
      }
      await sleep(250);
    }
  };

  let built = false;
  const mainName = `oci-e2e-image-${process.pid}`;
  let mainUrl = '';
  let running = false;
  const needsBuild = (tt: Test): boolean => {
    if (!built) tt.fail('the image was not built (see the build test)');
    return built;
  };
  const needsRunning = (tt: Test): boolean => {
    if (!running) tt.fail('the container is not running (see the listen test)');
    return running;
  };

  t.test(`the local base: Debian ${SUITE} minbase with this machine's Node.js, every library of node resolved`, async (t) => {
    const tar = await timed('debootstrap root (or cache)', () => minbaseRootTar(source, SUITE));
    t.comment(`debootstrap root: ${tar.cached ? 'from the cache' : 'made now'} (${tar.path})`);
    try {
      const { extraCa } = await timed('base image', () => buildNodeBaseImage(d.docker, tar.path, BASE_TAG));
      if (extraCa) t.comment("the base trusts this machine's NODE_EXTRA_CA_CERTS (for npm ci in the build)");
    } finally {
      await tar.release();
    }
    const version = await run('/usr/bin/node', ['--version']);
    const inImage = (cmd: string[]): Promise<string> =>
      d.docker(['run', '--rm', '--network', 'none', BASE_TAG, ...cmd], 120_000).then((r) => r.stdout.trim());
    t.match(await inImage(['cat', '/etc/debian_version']), /^12\./, 'Debian 12 (bookworm)');
    t.equal(await inImage(['node', '--version']), version.stdout.trim(), "node is the machine's");
    t.match(await inImage(['npm', '--version']), /^\d+\.\d+\.\d+$/, 'npm runs through its link');
    t.match(await inImage(['npx', '--version']), /^\d+\.\d+\.\d+$/, 'npx runs through its link');
    const ldd = await lddIn(d.docker, BASE_TAG, '/usr/bin/node');
    t.same(ldd.missing, [], 'ldd /usr/bin/node finds every library in the base', { ldd: ldd.output });
  });

  t.test('docker build of the real Dockerfile from the tracked files with --build-arg BASE_IMAGE', async (t) => {
    const ctx = await trackedFilesCopy(REPO_ROOT);
    try {
      t.ok(ctx.files.includes('Dockerfile') && ctx.files.includes('.dockerignore'), 'the context holds the Dockerfile and .dockerignore');
      t.notOk(
        ctx.files.some((f) => f.startsWith('node_modules/') || f.startsWith('dist/')),
        'no node_modules or dist/ in the context',
      );
      await timed('image build', () =>
        d.docker(['build', '--network', 'host', '--build-arg', `BASE_IMAGE=${BASE_TAG}`, '--tag', IMAGE_TAG, ctx.dir], 40 * 60_000),
      );
    } finally {
      await rm(ctx.dir, { recursive: true, force: true });
    }
    built = true;
    const baseLayers = await inspect<string[]>(BASE_TAG, '.RootFS.Layers');
    const layers = await inspect<string[]>(IMAGE_TAG, '.RootFS.Layers');
    t.same(layers.slice(0, baseLayers.length), baseLayers, 'the image is built on the local base (its layers first)');
    t.equal(await inspect<string>(IMAGE_TAG, '.Config.User'), '10001:10001', 'USER 10001:10001');
    t.same(await inspect<string[]>(IMAGE_TAG, '.Config.Entrypoint'), ['oci-registry'], 'ENTRYPOINT oci-registry');
    const listing = await d.docker(['run', '--rm', '--network', 'none', '--entrypoint', 'ls', IMAGE_TAG, '-A', '/app'], 120_000);
    t.same(
      listing.stdout.split('\n').filter(Boolean).sort(),
      ['dist', 'example.yaml', 'node_modules', 'package-lock.json', 'package.json'],
      '/app holds the program only (no src/, test/)',
    );
  });

  t.test('the container listens on --listen, as uid and gid 10001', async (t) => {
    if (!needsBuild(t)) return;
    const port = await freePort();
    mainUrl = `http://127.0.0.1:${port}`;
    await runContainer(mainName, port, `${mainUrl}/healthz`, [
      '--health-interval',
      '2s',
      '--health-timeout',
      '5s',
      '--health-start-period',
      '30s',
      '--health-retries',
      '3',
    ]);
    await timed('container serving', () => waitServing(mainName, mainUrl));
    running = true;
    const res = await fetch(`${mainUrl}/v2/`);
    await res.arrayBuffer();
    t.equal(res.status, 200, `GET ${mainUrl}/v2/ from the host`);
    t.equal(res.headers.get('docker-distribution-api-version'), 'registry/2.0');
    t.equal(await exec(mainName, ['id', '-u']), '10001', 'docker exec: id -u');
    t.equal(await exec(mainName, ['id', '-g']), '10001', 'docker exec: id -g');
    // The host's view of the server process (no user namespace remapping: the same ids).
    const pid = await inspect<number>(mainName, '.State.Pid');
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    t.match(status, /^Uid:\s+10001\s+10001\s+10001\s+10001$/m, `/proc/${pid}/status: every uid is 10001`);
    t.match(status, /^Gid:\s+10001\s+10001\s+10001\s+10001$/m, `/proc/${pid}/status: every gid is 10001`);
    t.match(
      (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0')[0] ?? '',
      /(?:^|\/)node$/,
      "the container's first process is node itself (it gets docker stop's SIGTERM)",
    );
  });

  t.test('the image HEALTHCHECK turns healthy', async (t) => {
    if (!needsRunning(t)) return;
    const check = await inspect<{ Test: string[] }>(IMAGE_TAG, '.Config.Healthcheck');
    t.same(check.Test.slice(0, 3), ['CMD', 'node', '-e'], 'the image declares the node fetch HEALTHCHECK');
    type Health = { Status: string; Log: { ExitCode: number; Output: string }[] | null };
    let health: Health | undefined;
    const ok = await timed('healthy', () =>
      eventually(async () => (health = await inspect<Health>(mainName, '.State.Health')).Status === 'healthy', 60_000, 500),
    );
    t.ok(ok, `docker inspect .State.Health.Status is healthy (last: ${health?.Status})`, { log: health?.Log });
    t.equal(health?.Log?.at(-1)?.ExitCode, 0, 'the last check exited 0');
  });

  t.test('a skopeo pull through the container has the upstream digests', async (t) => {
    if (!needsRunning(t)) return;
    const mark = upstream!.accessLog().length;
    const dest = join(work, 'pulled');
    await copy(`${mainUrl.slice('http://'.length)}/${REF}`, `dir:${dest}`);
    await assertDirHoldsImage(t, dest, image);
    assertOnlyMirrorUpstream(t, upstream!, mark, 'library/alpine');
  });

  t.test('the pull left the cache in the /data volume, owned by uid 10001', async (t) => {
    if (!needsRunning(t)) return;
    const files = (await exec(mainName, ['find', '/data', '-type', 'f', '-printf', '%U:%G %p\\n'])).split('\n').filter(Boolean);
    t.ok(files.length > 0, '/data holds files', { files });
    t.same(
      files.filter((f) => !f.startsWith('10001:10001 ')),
      [],
      'every file in /data belongs to 10001:10001',
    );
    for (const layer of image.layers) {
      const hex = layer.digest.slice('sha256:'.length);
      t.ok(
        files.some((f) => f.includes(hex)),
        `layer ${layer.digest.slice(0, 19)} is stored under /data`,
      );
    }
    const mounts = await inspect<{ Destination: string; Type: string }[]>(mainName, '.Mounts');
    t.ok(
      mounts.some((m) => m.Destination === '/data' && m.Type === 'volume'),
      "/data is the image's VOLUME",
    );
  });

  t.test('with the upstream stopped, a second pull is served from /data', async (t) => {
    if (!needsRunning(t)) return;
    await upstream!.stop();
    const dest = join(work, 'pulled-offline');
    await copy(`${mainUrl.slice('http://'.length)}/${REF}`, `dir:${dest}`);
    await assertDirHoldsImage(t, dest, image);
  });

  t.test('the runtime user cannot rewrite the program or its bin link', async (t) => {
    if (!needsRunning(t)) return;
    for (const [what, script] of [
      ['the entry file', 'echo hacked > /app/dist/cli/main.js'],
      ['a new file in /app', 'touch /app/evil.js'],
      ['a dependency', 'echo hacked > /app/node_modules/fastify/package.json'],
      ['the bin link', 'ln -sf /tmp/evil /usr/local/bin/oci-registry'],
    ] as const) {
      const result = await exec(mainName, ['sh', '-c', script]).then(
        () => 'succeeded',
        (e: Error) => e.message,
      );
      t.match(result, /Permission denied|cannot|Read-only/, `${what}: refused (${script})`);
    }
  });

  t.test('the HEALTHCHECK turns unhealthy when nothing answers at HEALTHCHECK_URL', async (t) => {
    if (!needsBuild(t)) return;
    const port = await freePort();
    const nowhere = await freePort();
    const name = `${mainName}-unhealthy`;
    await runContainer(name, port, `http://127.0.0.1:${nowhere}/healthz`, [
      '--health-interval',
      '1s',
      '--health-timeout',
      '5s',
      '--health-start-period',
      '1s',
      '--health-retries',
      '2',
    ]);
    await waitServing(name, `http://127.0.0.1:${port}`);
    let status = '';
    const ok = await timed('unhealthy', () =>
      eventually(async () => (status = await inspect<string>(name, '.State.Health.Status')) === 'unhealthy', 60_000, 500),
    );
    t.ok(ok, `docker inspect .State.Health.Status is unhealthy (last: ${status})`);
    await d.docker(['rm', '--force', '--volumes', name], 60_000);
    containers.splice(containers.indexOf(name), 1);
  });

  t.test(`docker stop ends the container within its ${STOP_GRACE_S} s grace period, exit code 0`, async (t) => {
    if (!needsRunning(t)) return;
    const t0 = performance.now();
    await d.docker(['stop', '--time', String(STOP_GRACE_S), mainName], (STOP_GRACE_S + 30) * 1000);
    const elapsedMs = performance.now() - t0;
    running = false;
    timings.push(`docker stop: ${(elapsedMs / 1000).toFixed(2)} s`);
    t.ok(elapsedMs < STOP_GRACE_S * 1000, `docker stop took ${(elapsedMs / 1000).toFixed(2)} s (< ${STOP_GRACE_S} s: no SIGKILL)`);
    const state = await inspect<{ ExitCode: number; OOMKilled: boolean; Running: boolean }>(mainName, '.State');
    t.equal(state.Running, false, 'the container stopped');
    t.equal(state.ExitCode, 0, 'exit code 0: the server handled SIGTERM (143: died of it, 137: SIGKILLed)');
    const logs = await d.docker(['logs', mainName], 30_000);
    t.match(
      logs.stdout,
      /"signal":"SIGTERM"[^\n]*"msg":"shutting down"|"msg":"shutting down"[^\n]*"signal":"SIGTERM"/,
      'the server logged its SIGTERM shutdown',
    );
  });
});
