/**
 * podman with a private root, runroot, storage (vfs, no overlay mounts), containers.conf, signature
 * policy, auth file and the given registries.conf (CONTAINERS_REGISTRIES_CONF): nothing from
 * /etc/containers, /var/lib/containers or the user's home is read or written.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Test } from 'tap';
import { findBinary } from './binaries.js';
import { run, unmountUnder } from './seed.js';
import { makeTempDir } from './util.js';

export interface Podman {
  dir: string;
  run(args: readonly string[], timeoutMs?: number): Promise<{ stdout: string; stderr: string }>;
  /** Removes every mount under its dir, then the dir. */
  destroy(): Promise<void>;
}

export async function makePodman(name: string, registriesConf: string): Promise<Podman> {
  const bin = findBinary('podman');
  if (!bin) throw new Error('MISSING BINARY podman: install it with apt-get install podman');
  // Its own short temp dir: podman refuses a runroot path longer than 50 characters.
  const dir = await makeTempDir(name);
  const root = join(dir, 'root');
  const runroot = join(dir, 'runroot');
  const tmp = join(dir, 'tmp');
  await mkdir(root, { recursive: true });
  await mkdir(runroot, { recursive: true });
  await mkdir(tmp, { recursive: true });
  const storageConf = join(dir, 'storage.conf');
  await writeFile(storageConf, `[storage]\ndriver = "vfs"\nrunroot = ${JSON.stringify(runroot)}\ngraphroot = ${JSON.stringify(root)}\n`);
  const containersConf = join(dir, 'containers.conf');
  await writeFile(containersConf, '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n');
  const policy = join(dir, 'policy.json');
  await writeFile(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
  const auth = join(dir, 'auth.json');
  await writeFile(auth, '{"auths":{}}\n', { mode: 0o600 });
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    CONTAINERS_REGISTRIES_CONF: registriesConf,
    CONTAINERS_STORAGE_CONF: storageConf,
    CONTAINERS_CONF: containersConf,
    REGISTRY_AUTH_FILE: auth,
    TMPDIR: tmp,
    NO_PROXY: '127.0.0.1,localhost',
    no_proxy: '127.0.0.1,localhost',
  };
  const global = [
    '--root',
    root,
    '--runroot',
    runroot,
    '--storage-driver',
    'vfs',
    '--cgroup-manager',
    'cgroupfs',
    '--events-backend',
    'file',
    '--tmpdir',
    tmp,
    '--log-level',
    'warn',
  ];
  return {
    dir,
    run: (args, timeoutMs = 300_000) => {
      // Pull-type commands take the private policy.
      const withPolicy = args[0] === 'pull' ? ['pull', '--signature-policy', policy, ...args.slice(1)] : args;
      return run(bin, [...global, ...withPolicy], { env, timeoutMs });
    },
    destroy: async () => {
      await unmountUnder(dir);
      if (!process.env.OCI_E2E_KEEP) await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Asserts podman's image `ref` has `digest` among its RepoDigests and, with `diffIds`, those layers. */
export async function assertPodmanImage(t: Test, p: Podman, ref: string, digest: string, diffIds?: string[]): Promise<void> {
  const doc = JSON.parse((await p.run(['image', 'inspect', ref])).stdout) as {
    RepoDigests?: string[];
    Digest?: string;
    RootFS?: { Layers?: string[] };
  }[];
  const repoDigests = doc[0]?.RepoDigests ?? [];
  t.ok(
    repoDigests.some((r) => r.endsWith(`@${digest}`)),
    `podman image inspect ${ref}: RepoDigests holds the upstream digest ${digest.slice(0, 19)}`,
    {
      repoDigests,
      digest: doc[0]?.Digest,
    },
  );
  if (diffIds) t.same(doc[0]?.RootFS?.Layers, diffIds, `${ref}: podman stored the layers with the upstream diff_ids`);
}
