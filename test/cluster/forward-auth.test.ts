/**
 * A forwarded request has the client's rights and no more: with client_auth on a namespace, a request
 * without valid credentials is refused by the replica it reaches (never forwarded); one with them is
 * forwarded with the client's Authorization, which the owner checks again and accepts.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import t from 'tap';
import { clusterKeys } from '../../src/cluster/rendezvous.js';
import { MEDIA_TYPES, startFixtureUpstream } from '../fixtures/upstream.js';
import { startMirrorReplicas } from '../helpers/mirror-replicas.js';

const ACCEPT = `${MEDIA_TYPES.ociManifest}, ${MEDIA_TYPES.ociIndex}`;
const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;

t.test('client_auth is checked on the replica the client reached and again on the owner', async (t) => {
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  const img = up.addImage('team/app', { tag: 'v1' });
  const dir = await mkdtemp(join(tmpdir(), 'htpasswd-'));
  const file = join(dir, 'htpasswd');
  await writeFile(file, `alice:${bcrypt.hashSync('s3cret', 4).replace(/^\$2b\$/, '$2y$')}\n`);
  const cluster = await startMirrorReplicas({ upstreams: [{ namespace: 'private.example', host: up.host, clientAuthFile: file }] });
  t.teardown(() => cluster.close());
  const key = clusterKeys.tag('private.example', 'team/app', 'v1');
  const owner = cluster.ownerOf(key);
  const [other] = cluster.othersOf(key);
  const url = `${other?.url}/v2/team/app/manifests/v1?ns=private.example`;

  const anonymous = await fetch(url, { headers: { accept: ACCEPT } });
  t.equal(anonymous.status, 401, 'no credentials: refused here');
  const wrong = await fetch(url, { headers: { accept: ACCEPT, authorization: basic('alice', 'nope') } });
  t.equal(wrong.status, 401, 'wrong credentials: refused here');
  const before = await (await fetch(`${other?.url}/metrics`)).text();
  t.notMatch(before, /oci_registry_peer_requests_forwarded_total\{kind="manifest"\} [1-9]/, 'nothing was forwarded');

  const allowed = await fetch(url, { headers: { accept: ACCEPT, authorization: basic('alice', 's3cret') } });
  t.equal(allowed.status, 200);
  t.equal(allowed.headers.get('docker-content-digest'), img.digest);
  await allowed.arrayBuffer();
  const ownerMetrics = await (await fetch(`${owner.url}/metrics`)).text();
  t.match(
    ownerMetrics,
    /oci_registry_peer_requests_answered_total\{kind="manifest",status="200"\} 1\b/,
    'the owner accepted the forwarded credentials',
  );
  t.notMatch(ownerMetrics, /oci_registry_peer_requests_answered_total\{kind="manifest",status="401"\}/);
  t.equal(up.countRequests({ method: 'GET', pathIncludes: '/manifests/' }), 1);
});
