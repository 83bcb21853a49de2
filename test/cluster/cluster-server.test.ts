/**
 * The cluster settings on the server side: --peers, --advertise and --peer-cache-copies checked like the
 * other flags; a server with a DNS membership resolves it before serving and reports its size; a request
 * carrying the hop header is logged and counted as answered for a peer.
 */
import { Writable } from 'node:stream';
import pino from 'pino';
import t from 'tap';
import { clusterFromFlags } from '../../src/cli/cluster-options.js';
import { HOP_HEADER } from '../../src/cluster/hop.js';
import { ConfigError } from '../../src/config/upstreams.js';
import { startMirror } from '../helpers/mirror.js';

const listen = { host: '0.0.0.0', port: 8080 };

t.test('flags: the list, the advertise URL and its defaults', async (t) => {
  t.equal(clusterFromFlags({}, listen), undefined, 'without --peers the replica works alone');
  t.same(clusterFromFlags({ peers: 'http://10.0.0.5:8080,http://10.0.0.6:8080' }, listen, { POD_IP: '10.0.0.6' }), {
    peers: { kind: 'static', urls: ['http://10.0.0.5:8080', 'http://10.0.0.6:8080'] },
    advertise: 'http://10.0.0.6:8080',
    peerCacheCopies: false,
  });
  t.same(
    clusterFromFlags({ peers: 'dns+http://Mirror-Peers.ns.svc.cluster.local:8080', peerCacheCopies: true }, listen, { POD_IP: 'fd00::7' }),
    {
      peers: { kind: 'dns', scheme: 'http', name: 'mirror-peers.ns.svc.cluster.local', port: 8080 },
      advertise: 'http://[fd00::7]:8080',
      peerCacheCopies: true,
    },
  );
  t.equal(
    clusterFromFlags({ peers: 'http://127.0.0.2:5000,http://127.0.0.3:5000' }, { host: '127.0.0.2', port: 5000 }, {})?.advertise,
    'http://127.0.0.2:5000',
    'without POD_IP: the listen address when it is not a wildcard',
  );
  t.equal(
    clusterFromFlags({ peers: 'http://a:1,http://b:2', advertise: 'http://B:2/' }, listen, {})?.advertise,
    'http://b:2',
    '--advertise, canonical',
  );
});

t.test('flags: mistakes name the flag', async (t) => {
  const bad: Array<[Parameters<typeof clusterFromFlags>[0], NodeJS.ProcessEnv, RegExp]> = [
    [
      { peers: 'http://10.0.0.5:8080,http://10.0.0.6:8080' },
      { POD_IP: '10.0.0.9' },
      /^--peers: the list must include this replica, http:\/\/10\.0\.0\.9:8080/,
    ],
    [{ peers: 'http://10.0.0.5:8080' }, {}, /^--peers: cannot tell how the peers reach this replica/],
    [{ peers: 'ftp://x:1' }, { POD_IP: '1.2.3.4' }, /^--peers: expected http:\/\/ or https:\/\//],
    [{ peers: 'http://x:1/v2' }, { POD_IP: '1.2.3.4' }, /^--peers: expected a base URL/],
    [{ peers: 'dns+http://peers' }, { POD_IP: '1.2.3.4' }, /^--peers: expected dns\+http:\/\/NAME:PORT/],
    [{ peers: 'dns+http://peers:80,http://a:1' }, { POD_IP: '1.2.3.4' }, /^--peers: dns\+http:\/\/NAME:PORT names every peer/],
    [{ peers: 'http://a:1', advertise: 'a:1' }, {}, /^--advertise: /],
    [{ advertise: 'http://a:1' }, {}, /^--advertise: only meaningful with --peers/],
    [{ peerCacheCopies: true }, {}, /^--peer-cache-copies: only meaningful with --peers/],
  ];
  for (const [flags, env, message] of bad) {
    t.throws(() => clusterFromFlags(flags, listen, env), ConfigError, JSON.stringify(flags));
    t.throws(() => clusterFromFlags(flags, listen, env), { message }, JSON.stringify(flags));
  }
});

t.test('a server with a DNS membership, and a request from a peer', async (t) => {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino(
    { level: 'info' },
    new Writable({ write: (chunk: Buffer, _e, cb) => (lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>), cb()) }),
  );
  const mirror = await startMirror({
    upstreams: [],
    log,
    cluster: {
      peers: { kind: 'dns', scheme: 'http', name: 'peers.test', port: 5000 },
      advertise: 'http://127.0.0.2:5000',
      peerCacheCopies: false,
    },
    clusterLookup: { lookup: async () => ['127.0.0.3', '127.0.0.2', '127.0.0.1'], refreshMs: 60_000 },
  });
  t.teardown(() => mirror.close());
  const cluster = mirror.server.cluster;
  t.ok(cluster, 'the server has its cluster');
  t.same(
    cluster?.membership.members(),
    ['http://127.0.0.1:5000', 'http://127.0.0.2:5000', 'http://127.0.0.3:5000'],
    'resolved before serving',
  );
  t.equal(cluster?.settings.advertise, 'http://127.0.0.2:5000');
  t.ok(
    lines.some((l) => l['msg'] === 'cluster membership' && l['selfListed'] === true),
    'the membership is logged',
  );

  const fromPeer = await fetch(`${mirror.url}/v2/library/alpine/manifests/latest?ns=docker.io`, { headers: { [HOP_HEADER]: '1' } });
  t.equal(fromPeer.status, 404, 'answered here (the namespace is not mirrored)');
  await fetch(`${mirror.url}/v2/library/alpine/manifests/latest?ns=docker.io`);
  await new Promise((r) => setTimeout(r, 50));
  const requests = lines.filter((l) => l['msg'] === 'request');
  t.equal(requests[0]?.['hop'], true, 'the log line says it came from a peer');
  t.equal(requests[1]?.['hop'], undefined, 'a client request does not');
  cluster?.peerFailed('http://127.0.0.3:5000', 'blob', 'digest_mismatch');
  t.notOk(cluster?.membership.live().includes('http://127.0.0.3:5000'), 'a peer whose bytes did not verify is marked down');
  const metrics = await (await fetch(`${mirror.url}/metrics`)).text();
  t.match(metrics, /oci_registry_peer_errors_total\{kind="blob",code="digest_mismatch"\} 1/);
  t.match(metrics, /oci_registry_peers_marked_down_total 1/);
  t.match(metrics, /oci_registry_cluster_members 3/);
  t.match(metrics, /oci_registry_peer_requests_answered_total\{kind="manifest",status="404"\} 1/);
});

t.test('a server without --peers has no cluster and no membership sample', async (t) => {
  const mirror = await startMirror({ upstreams: [] });
  t.teardown(() => mirror.close());
  t.equal(mirror.server.cluster, undefined);
  const metrics = await (await fetch(`${mirror.url}/metrics`)).text();
  t.notMatch(metrics, /oci_registry_cluster_members \d/);
  t.match(metrics, /# TYPE oci_registry_peer_requests_forwarded_total counter/);
});
