import { Option, type Command } from 'commander';
import type { ClusterSettings } from '../cluster/cluster.js';
import { canonicalPeerUrl, type PeerAddressError, parsePeerSource, peerUrlFor } from '../cluster/peer-address.js';
import { ConfigError } from '../config/upstreams.js';
import type { ListenAddress } from './listen-address.js';

/** Server flags that make replicas cooperate (one upstream download per blob per cluster), each also an environment variable. */
export function addClusterOptions(program: Command): void {
  program
    .addOption(
      new Option(
        '--peers <list>',
        'every replica, this one included: base URLs (http://10.0.0.5:8080,...) or dns+http://NAME:PORT (A/AAAA records, re-resolved every 10s)',
      ).env('PEERS'),
    )
    .addOption(
      new Option('--advertise <url>', 'how the peers reach this replica (default: http://$POD_IP:<listen port>)').env('ADVERTISE_URL'),
    )
    .addOption(
      new Option('--peer-cache-copies', 'filesystem mode: also keep a copy of blobs a peer served (default: stream them, keep none)')
        .env('PEER_CACHE_COPIES')
        .default(false),
    );
}

export interface ClusterFlags {
  peers?: string | undefined;
  advertise?: string | undefined;
  peerCacheCopies?: boolean | undefined;
}

/**
 * Checks the flags; undefined without --peers (the replica works alone). The advertise URL defaults to
 * POD_IP (the downward API) and the listen port, else to the listen address when it is not a wildcard.
 */
export function clusterFromFlags(
  flags: ClusterFlags,
  listen: ListenAddress,
  env: NodeJS.ProcessEnv = process.env,
): ClusterSettings | undefined {
  if (flags.peers === undefined || flags.peers.trim() === '') {
    if (flags.advertise !== undefined) throw new ConfigError('--advertise: only meaningful with --peers');
    if (flags.peerCacheCopies) throw new ConfigError('--peer-cache-copies: only meaningful with --peers');
    return undefined;
  }
  let peers;
  try {
    peers = parsePeerSource(flags.peers);
  } catch (e) {
    throw new ConfigError(`--peers: ${(e as PeerAddressError).message}`);
  }
  const advertise = advertiseUrl(flags.advertise, listen, env, peers.kind === 'dns' ? peers.scheme : 'http');
  if (peers.kind === 'static' && !peers.urls.includes(advertise)) {
    throw new ConfigError(`--peers: the list must include this replica, ${advertise} (--advertise); got ${peers.urls.join(', ')}`);
  }
  return { peers, advertise, peerCacheCopies: flags.peerCacheCopies === true };
}

function advertiseUrl(flag: string | undefined, listen: ListenAddress, env: NodeJS.ProcessEnv, scheme: 'http' | 'https'): string {
  if (flag !== undefined) {
    try {
      return canonicalPeerUrl(flag);
    } catch (e) {
      throw new ConfigError(`--advertise: ${(e as PeerAddressError).message}`);
    }
  }
  const host = env['POD_IP']?.trim() || (isWildcard(listen.host) ? undefined : listen.host);
  if (host === undefined || listen.port === 0) {
    throw new ConfigError(
      '--peers: cannot tell how the peers reach this replica: set --advertise URL (or POD_IP, with a fixed --listen port)',
    );
  }
  return peerUrlFor(scheme, host.replace(/^\[|\]$/g, ''), listen.port);
}

function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '[::]' || host === '';
}
