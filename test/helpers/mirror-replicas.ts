/**
 * Three (or n) mirrors in this process that cooperate (`--peers`, a static list): replica i listens on
 * 127.0.0.<i+1>, all on one port, so the member list is known before any starts. Each has its own
 * filesystem root unless `storage` gives one per replica (e.g. one S3 bucket).
 */
import { rendezvousOwner } from '../../src/cluster/rendezvous.js';
import type { Storage } from '../../src/storage/storage.js';
import { startMirror, type StartMirrorOptions, type TestMirror } from './mirror.js';
import { portFreeOn } from './ports.js';

export interface MirrorReplicas {
  replicas: TestMirror[];
  urls: string[];
  /** The replica that owns `key` (clusterKeys.digest / clusterKeys.tag) while all are up. */
  ownerOf(key: string): TestMirror;
  /** The replicas that do not own `key`. */
  othersOf(key: string): TestMirror[];
  close(): Promise<void>;
}

export async function startMirrorReplicas(
  options: StartMirrorOptions & { count?: number; peerCacheCopies?: boolean; storageFor?: (i: number) => Storage },
): Promise<MirrorReplicas> {
  const count = options.count ?? 3;
  const hosts = Array.from({ length: count }, (_, i) => `127.0.0.${i + 1}`);
  const port = await portFreeOn(hosts);
  const urls = hosts.map((h) => `http://${h}:${port}`);
  const replicas: TestMirror[] = [];
  try {
    for (const [i, host] of hosts.entries()) {
      replicas.push(
        await startMirror({
          ...options,
          ...(options.storageFor ? { storage: options.storageFor(i) } : {}),
          listen: { host, port },
          cluster: { peers: { kind: 'static', urls }, advertise: urls[i] as string, peerCacheCopies: options.peerCacheCopies ?? false },
        }),
      );
    }
  } catch (e) {
    await Promise.all(replicas.map((r) => r.close()));
    throw e;
  }
  const ownerOf = (key: string): TestMirror => replicas[urls.indexOf(rendezvousOwner(key, urls) as string)] as TestMirror;
  return {
    replicas,
    urls,
    ownerOf,
    othersOf: (key) => replicas.filter((r) => r !== ownerOf(key)),
    close: async () => {
      await Promise.all(replicas.map((r) => r.close()));
    },
  };
}
