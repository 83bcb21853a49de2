/**
 * The chart's cluster wiring (values `peers.*`), rendered with the real helm: the headless peers Service
 * (ready pods only, the pods' port), `--peers dns+http://<service>.<namespace>.svc.<domain>:<port>` and
 * POD_IP from the downward API, in both modes (StatefulSet with per-replica volumes; Deployment with S3).
 */
import path from 'node:path';
import t from 'tap';
import { parsePeerSource } from '../../src/cluster/peer-address.js';
import { chartDir, helm, helmTemplate, render, templateArgs, type Obj } from './render.js';

const h = helm();
const skip = typeof h === 'string' ? h : false;
const s3Values = path.join(chartDir, 'ci', 's3-values.yaml');
const fsValues = path.join(chartDir, 'ci', 'filesystem-values.yaml');

function workload(docs: Obj[]): Obj {
  return docs.find((d) => d.kind === 'Deployment' || d.kind === 'StatefulSet');
}
function args(docs: Obj[]): string[] {
  return workload(docs)
    .spec.template.spec.containers.find((c: Obj) => c.name === 'oci-registry')
    .args.map(String);
}
function env(docs: Obj[], name: string): Obj | undefined {
  return workload(docs)
    .spec.template.spec.containers.find((c: Obj) => c.name === 'oci-registry')
    .env.find((e: Obj) => e.name === name);
}
function flag(a: string[], name: string): string | undefined {
  const i = a.indexOf(name);
  return i < 0 ? undefined : a[i + 1];
}

for (const [mode, kind, valuesFiles, set] of [
  ['filesystem', 'StatefulSet', [], ['replicaCount=3']],
  ['filesystem (ci values)', 'StatefulSet', [fsValues], []],
  ['s3', 'Deployment', [s3Values], ['replicaCount=3']],
] as Array<[string, string, string[], string[]]>) {
  t.test(`${mode}: the peers Service, --peers and POD_IP`, { skip }, async (t) => {
    const docs = render({ valuesFiles, set, namespace: 'mirror' });
    const w = workload(docs);
    t.equal(w.kind, kind);
    const svc = docs.find((d) => d.kind === 'Service' && d.metadata.name.endsWith('-peers'));
    t.ok(svc, 'a peers Service');
    t.equal(svc.spec.clusterIP, 'None', 'headless: DNS answers with the pod addresses');
    t.equal(svc.spec.publishNotReadyAddresses, false, 'ready pods only: a starting or terminating replica owns nothing');
    t.same(svc.spec.selector, w.spec.selector.matchLabels, 'selects the mirror pods');
    t.equal(svc.metadata.labels['oci-registry/headless'], 'true', 'kept out of the ServiceMonitor like the other headless Service');
    const port = w.spec.template.spec.containers[0].ports.find((p: Obj) => p.name === 'http').containerPort;
    t.same(
      svc.spec.ports.map((p: Obj) => [p.port, p.targetPort]),
      [[port, 'http']],
      "the pods' own port",
    );

    const a = args(docs);
    const peers = flag(a, '--peers');
    t.equal(peers, `dns+http://${svc.metadata.name}.mirror.svc.cluster.local:${port}`);
    t.ok(a.indexOf('--peers') < a.findIndex((x) => x === 'filesystem' || x === 's3'), 'a global flag, before the storage subcommand');
    t.same(
      parsePeerSource(peers ?? ''),
      { kind: 'dns', scheme: 'http', name: `${svc.metadata.name}.mirror.svc.cluster.local`, port },
      'the mirror parses it',
    );
    t.same(
      env(docs, 'POD_IP')?.valueFrom,
      { fieldRef: { fieldPath: 'status.podIP' } },
      'POD_IP from the downward API (the default --advertise)',
    );
    t.equal(flag(a, '--listen')?.endsWith(`:${port}`), true, 'the advertised port is the listen port');
    t.notOk(a.includes('--peer-cache-copies'));
  });
}

t.test('peers.enabled=false: no peers Service, no --peers, no POD_IP', { skip }, async (t) => {
  const docs = render({ set: ['peers.enabled=false', 'replicaCount=2'] });
  t.notOk(docs.some((d) => d.kind === 'Service' && d.metadata.name.endsWith('-peers')));
  t.notOk(args(docs).includes('--peers'));
  t.equal(env(docs, 'POD_IP'), undefined);
});

t.test('peers.clusterDomain and peers.cacheCopies', { skip }, async (t) => {
  const docs = render({ set: ['peers.clusterDomain=corp.internal.', 'peers.cacheCopies=true'], namespace: 'ops' });
  const a = args(docs);
  t.match(flag(a, '--peers'), /^dns\+http:\/\/[a-z0-9-]+-peers\.ops\.svc\.corp\.internal:8080$/);
  t.ok(a.includes('--peer-cache-copies'));
  const s3 = helmTemplate(templateArgs({ valuesFiles: [s3Values], set: ['peers.cacheCopies=true'] }));
  t.not(s3.status, 0, 'refused in s3 mode');
  t.match(s3.stderr, /peers\.cacheCopies is for storage\.type filesystem/);
});
