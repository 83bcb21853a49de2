/**
 * Tests of the chart's monitoring objects, both off by default: the Grafana dashboard ConfigMap
 * (grafanaDashboard.*, dashboards/oci-registry.json) and the PrometheusRule (prometheusRule.*).
 * Rendered with the real helm (render.ts). Every oci_registry_ metric they query must be one a running
 * mirror exports; promtool (Prometheus's own parser) must accept their PromQL, and each alert is
 * unit-tested on synthetic series with `promtool test rules`.
 */
import t from 'tap';
import * as coreV1 from 'kubernetes-models/v1';
import { METRIC_PREFIX } from '../../src/metrics/registry.js';
import { MEDIA_TYPES, startFixtureUpstream } from '../fixtures/upstream.js';
import { startMirror } from '../helpers/mirror.js';
import { promtool, promtoolMissing } from './promtool.js';
import { chartDir, helm, helmTemplate, render, templateArgs, type Obj, type RenderOptions } from './render.js';

const inCI = Boolean(process.env['CI']) && !/^(?:0|false)$/i.test(process.env['CI'] ?? '');
const realHelm = helm();
// As in chart.test.ts: without helm every test here is skipped loudly, except in CI where that fails.
const skip = typeof realHelm === 'string' && !inCI ? `the real helm binary cannot run: ${realHelm}` : false;
if (skip) console.error(`\n*** SKIPPING the monitoring chart tests: ${skip} ***\n`);
const noPromtool = promtoolMissing();
const promSkip = skip || (noPromtool && !inCI ? `promtool cannot run (install the Debian package prometheus): ${noPromtool}` : false);
if (promSkip && !skip) console.error(`\n*** SKIPPING the promtool tests: ${promSkip} ***\n`);

const BOTH_ON: RenderOptions = { set: ['grafanaDashboard.enabled=true', 'prometheusRule.enabled=true'] };
const ALERTS = ['OciRegistryUpstreamFailing', 'OciRegistryStorageErrors', 'OciRegistryCacheNearLimit', 'OciRegistryServerErrors'];

function dashboardConfigMaps(docs: Obj[]): Obj[] {
  return docs.filter((d) => d.kind === 'ConfigMap' && d.data?.['oci-registry.json'] !== undefined);
}

/** The one dashboard ConfigMap and its parsed dashboard. */
function dashboardOf(docs: Obj[]): { cm: Obj; dashboard: Obj } {
  const cms = dashboardConfigMaps(docs);
  if (cms.length !== 1) throw new Error(`expected one dashboard ConfigMap, got ${cms.length}`);
  return { cm: cms[0], dashboard: JSON.parse(cms[0].data['oci-registry.json']) };
}

function ruleOf(docs: Obj[]): Obj {
  const rules = docs.filter((d) => d.kind === 'PrometheusRule');
  if (rules.length !== 1) throw new Error(`expected one PrometheusRule, got ${rules.length}`);
  return rules[0];
}

function alertRules(rule: Obj): Obj[] {
  return rule.spec.groups.flatMap((g: Obj) => g.rules);
}

interface Expr {
  where: string;
  expr: string;
}

/** `label_values(<selector>, label)` -> the selector, which is PromQL. */
function labelValuesSelector(query: string): string | undefined {
  const m = /^\s*label_values\((.*),\s*[^,()]+\)\s*$/s.exec(query);
  return m?.[1];
}

/** Every PromQL expression of the dashboard: panel targets, and the selectors of its query variables. */
function dashboardExprs(dashboard: Obj): Expr[] {
  const out: Expr[] = [];
  for (const p of dashboard.panels) {
    for (const target of p.targets ?? []) out.push({ where: `panel ${p.id} "${p.title}" ${target.refId}`, expr: target.expr });
  }
  for (const v of dashboard.templating.list) {
    if (v.type !== 'query') continue;
    const query = typeof v.query === 'string' ? v.query : v.query?.query;
    const selector = labelValuesSelector(String(query));
    if (selector === undefined) throw new Error(`variable ${v.name}: only label_values(...) queries are expected, got ${query}`);
    out.push({ where: `variable ${v.name}`, expr: selector });
  }
  return out;
}

function ruleExprs(rule: Obj): Expr[] {
  return alertRules(rule).map((r) => ({ where: `alert ${r.alert}`, expr: String(r.expr) }));
}

/** The metric names with the mirror's prefix in a PromQL text (whole identifiers only). */
function metricNames(expr: string): string[] {
  const re = new RegExp(`(?<![A-Za-z0-9_:])${METRIC_PREFIX}[A-Za-z0-9_:]*`, 'g');
  return [...new Set(expr.match(re) ?? [])];
}

/**
 * The series names PromQL can query, from the `# TYPE` lines of an exposition: a histogram only as
 * _bucket, _sum and _count, a summary bare and as _sum and _count, anything else bare.
 */
function queryableNames(exposition: string): Set<string> {
  const out = new Set<string>();
  for (const m of exposition.matchAll(/^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)$/gm)) {
    const [, name, type] = m as unknown as [string, string, string];
    if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) out.add(name + s);
    else if (type === 'summary') for (const s of ['', '_sum', '_count']) out.add(name + s);
    else out.add(name);
  }
  return out;
}

/** Substitutes the dashboard's Grafana variables, leaving anything else (label_replace's "$1") alone. */
function grafanaInterpolate(expr: string, vars: Record<string, string>): string {
  return expr.replace(/\$\{(\w+)\}|\$(\w+)/g, (whole, a: string | undefined, b: string | undefined) => vars[(a ?? b) as string] ?? whole);
}

/** Whether two gridPos rectangles overlap. */
function overlaps(a: Obj, b: Obj): boolean {
  return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
}

// ---------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------

t.test('no dashboard ConfigMap and no PrometheusRule by default', { skip }, async (t) => {
  const docs = render();
  t.same(dashboardConfigMaps(docs), [], 'no dashboard ConfigMap');
  t.same(
    docs.filter((d) => d.kind === 'PrometheusRule'),
    [],
    'no PrometheusRule',
  );
});

t.test('the dashboard ConfigMap carries the Grafana sidecar label and a valid dashboard', { skip }, async (t) => {
  const { cm, dashboard } = dashboardOf(render({ set: ['grafanaDashboard.enabled=true'] }));
  t.doesNotThrow(() => new coreV1.ConfigMap(cm).validate(), 'a valid ConfigMap');
  t.equal(cm.metadata.namespace, 'mirror', 'in the release namespace');
  t.equal(cm.metadata.labels.grafana_dashboard, '1', 'the sidecar label grafana_dashboard: "1"');
  t.equal(cm.metadata.labels['app.kubernetes.io/instance'], 'r', 'the chart labels');

  t.equal(dashboard.schemaVersion, 39, 'schemaVersion 39');
  t.equal(dashboard.uid, 'oci-registry');
  t.ok(dashboard.title, 'a title');
  const vars = new Map<string, Obj>(dashboard.templating.list.map((v: Obj) => [v.name, v]));
  t.match(vars.get('datasource'), { type: 'datasource', query: 'prometheus' }, 'a prometheus datasource variable');
  t.match(vars.get('job'), { type: 'query', includeAll: true }, 'a job filter');
  t.match(vars.get('registry'), { type: 'query', includeAll: true }, 'a registry namespace filter');
  t.match(
    vars.get('ns_label'),
    { type: 'custom', current: { value: 'exported_namespace' } },
    'the registry namespace label, exported_namespace by default',
  );

  const ids = new Set<number>();
  const panels: Obj[] = dashboard.panels;
  t.ok(panels.length >= 10, `${panels.length} panels`);
  for (const p of panels) {
    const name = `panel ${p.id} "${p.title}"`;
    t.ok(Number.isInteger(p.id) && !ids.has(p.id), `${name}: a unique id`);
    ids.add(p.id);
    t.ok(p.title, `${name}: a title`);
    const g = p.gridPos;
    t.ok(
      [g.x, g.y, g.w, g.h].every(Number.isInteger) && g.x >= 0 && g.y >= 0 && g.w > 0 && g.h > 0 && g.x + g.w <= 24,
      `${name}: gridPos ${JSON.stringify(g)} within 24 columns`,
    );
    for (const q of panels) if (q !== p && overlaps(g, q.gridPos)) t.fail(`${name} overlaps panel ${q.id}`);
    if (p.type === 'row') continue;
    t.ok(['stat', 'timeseries'].includes(p.type), `${name}: type ${p.type}`);
    t.same(p.datasource, { type: 'prometheus', uid: '${datasource}' }, `${name}: the datasource variable`);
    t.ok(Array.isArray(p.targets) && p.targets.length > 0, `${name}: targets`);
    const refIds = new Set<string>();
    for (const target of p.targets ?? []) {
      t.ok(
        typeof target.expr === 'string' && target.expr.includes(METRIC_PREFIX),
        `${name} ${target.refId}: an expr on the mirror's metrics`,
      );
      t.ok(target.refId && !refIds.has(target.refId), `${name}: unique refId ${target.refId}`);
      refIds.add(target.refId);
      t.equal(target.datasource?.uid, '${datasource}', `${name} ${target.refId}: the datasource variable`);
      t.match(target.expr, /job=~"\$job"/, `${name} ${target.refId}: filtered by $job`);
    }
  }

  // The panels the chart promises: hit ratio, bytes by source, upstream latency and errors by namespace,
  // downloads in flight, storage errors, cache size and limit.
  const used = new Set(dashboardExprs(dashboard).flatMap((e) => metricNames(e.expr)));
  for (const metric of [
    'cache_requests_total',
    'bytes_served_total',
    'upstream_request_duration_seconds_bucket',
    'upstream_requests_total',
    'upstream_errors_total',
    'blob_downloads_in_flight',
    'storage_errors_total',
    'cache_size_bytes',
    'cache_size_limit_bytes',
  ]) {
    t.ok(used.has(METRIC_PREFIX + metric), `the dashboard shows ${METRIC_PREFIX}${metric}`);
  }
});

t.test('the dashboard ConfigMap: sidecar label, namespace, labels and annotations are configurable', { skip }, async (t) => {
  const { cm } = dashboardOf(
    render({
      set: [
        'grafanaDashboard.enabled=true',
        'grafanaDashboard.namespace=monitoring',
        'grafanaDashboard.sidecarLabel=dashboards',
        'grafanaDashboard.labels.team=platform',
        'grafanaDashboard.annotations.grafana_folder=Registry',
      ],
      setString: ['grafanaDashboard.sidecarLabelValue=oci'],
    }),
  );
  t.equal(cm.metadata.namespace, 'monitoring');
  t.equal(cm.metadata.labels.dashboards, 'oci', 'the configured sidecar label and value');
  t.notOk('grafana_dashboard' in cm.metadata.labels, 'not the default label');
  t.equal(cm.metadata.labels.team, 'platform');
  t.same(cm.metadata.annotations, { grafana_folder: 'Registry' });

  const clash = dashboardOf(render({ set: ['grafanaDashboard.enabled=true', 'grafanaDashboard.labels.grafana_dashboard=0'] }));
  t.equal(clash.cm.metadata.labels.grafana_dashboard, '1', 'extra labels cannot unset the sidecar label (one key, no duplicate)');
});

t.test('the PrometheusRule: groups of rules with alert, expr, for, labels and annotations', { skip }, async (t) => {
  const rule = ruleOf(render({ set: ['prometheusRule.enabled=true'] }));
  t.equal(rule.apiVersion, 'monitoring.coreos.com/v1');
  t.equal(rule.metadata.name, 'r-oci-registry');
  t.equal(rule.metadata.namespace, 'mirror');
  t.ok(Array.isArray(rule.spec.groups) && rule.spec.groups.length === 1, 'one group');
  const group = rule.spec.groups[0];
  t.ok(group.name, 'the group has a name');
  t.notOk('interval' in group, 'Prometheus evaluates it at its own interval by default');
  t.same(
    group.rules.map((r: Obj) => r.alert),
    ALERTS,
    'upstream failing, storage errors, cache near its limit, 5xx responses',
  );
  for (const r of group.rules) {
    t.same(Object.keys(r).sort(), ['alert', 'annotations', 'expr', 'for', 'labels'], `${r.alert}: alert, expr, for, labels, annotations`);
    t.match(r.alert, /^[A-Z][A-Za-z0-9]+$/, `${r.alert}: an alert name`);
    t.ok(typeof r.expr === 'string' && r.expr.includes(METRIC_PREFIX), `${r.alert}: an expr on the mirror's metrics`);
    t.match(r.for, /^(\d+(ms|s|m|h|d|w|y))+$/, `${r.alert}: for is a duration`);
    t.match(r.labels, { severity: /^(warning|critical)$/ }, `${r.alert}: a severity`);
    t.ok(typeof r.annotations.summary === 'string' && r.annotations.summary.length > 10, `${r.alert}: a summary`);
    t.ok(typeof r.annotations.description === 'string' && r.annotations.description.length > 40, `${r.alert}: a description`);
  }
  const upstream = group.rules.find((r: Obj) => r.alert === 'OciRegistryUpstreamFailing');
  t.match(upstream.expr, /sum by \(job, exported_namespace\)/, 'upstream failures are per registry namespace');
  t.match(upstream.annotations.summary, '{{ $labels.exported_namespace }}', 'and name it');
});

t.test('the PrometheusRule: thresholds, durations, severities, selector and labels are configurable', { skip }, async (t) => {
  const rule = ruleOf(
    render({
      set: [
        'prometheusRule.enabled=true',
        'prometheusRule.namespace=monitoring',
        'prometheusRule.labels.release=kps',
        'prometheusRule.annotations.owner=platform',
        'prometheusRule.rateWindow=10m',
        'prometheusRule.interval=1m',
        'prometheusRule.additionalAlertLabels.team=platform',
        'prometheusRule.alerts.upstreamFailing.threshold=0.25',
        'prometheusRule.alerts.upstreamFailing.for=1h',
        'prometheusRule.alerts.upstreamFailing.severity=critical',
        'prometheusRule.alerts.storageErrors.enabled=false',
        'metrics.registryNamespaceLabel=namespace',
      ],
      setString: ['prometheusRule.selector=job="mirror-oci-registry"'],
    }),
  );
  t.equal(rule.metadata.namespace, 'monitoring');
  t.equal(rule.metadata.labels.release, 'kps', 'the label the Prometheus ruleSelector matches');
  t.same(rule.metadata.annotations, { owner: 'platform' });
  t.equal(rule.spec.groups[0].interval, '1m');
  const rules = alertRules(rule);
  t.same(
    rules.map((r) => r.alert),
    ALERTS.filter((a) => a !== 'OciRegistryStorageErrors'),
    'a disabled alert is left out',
  );
  const upstream = rules[0];
  t.match(upstream.expr, /> 0\.25$/, 'the threshold');
  t.equal(upstream.for, '1h');
  t.same(upstream.labels, { severity: 'critical', team: 'platform' });
  t.match(upstream.expr, /sum by \(job, namespace\)/, 'metrics.registryNamespaceLabel');
  for (const r of rules) {
    const selectors = [...String(r.expr).matchAll(/oci_registry_\w+(\{[^}]*\})?/g)];
    for (const s of selectors) t.match(s[1] ?? '', /job="mirror-oci-registry"/, `${r.alert}: ${s[0]} has the selector`);
    t.notMatch(r.expr, /\[5m\]/, `${r.alert}: the rate window`);
  }
  t.match(upstream.expr, /\[10m\]/, 'the rate window');
});

t.test("metrics.registryNamespaceLabel sets the default of the dashboard's namespace label", { skip }, async (t) => {
  const { dashboard } = dashboardOf(render({ set: ['grafanaDashboard.enabled=true', 'metrics.registryNamespaceLabel=registry_ns'] }));
  const v = dashboard.templating.list.find((x: Obj) => x.name === 'ns_label');
  t.same(v.current, { selected: true, text: 'registry_ns', value: 'registry_ns' });
  t.equal(v.query, 'registry_ns,exported_namespace,namespace', 'offered first, the usual two still to choose from');
  t.same(
    v.options.filter((o: Obj) => o.selected).map((o: Obj) => o.value),
    ['registry_ns'],
    'the one selected option',
  );
});

t.test('values that end up in PromQL are checked at render time', { skip }, async (t) => {
  const cases: Array<[string, string[], RegExp]> = [
    [
      'a selector closing the braces',
      ['prometheusRule.selector=job="x"} or vector(1) #'],
      /prometheusRule\.selector must be PromQL label matchers/,
    ],
    ['a selector without quotes', ['prometheusRule.selector=job=x'], /prometheusRule\.selector must be PromQL label matchers/],
    [
      'a label name with PromQL in it',
      ['metrics.registryNamespaceLabel=namespace) or vector(1'],
      /metrics\.registryNamespaceLabel must be a Prometheus label name/,
    ],
    [
      'a threshold that is an expression',
      ['prometheusRule.alerts.serverErrors.threshold=0 or vector(1)'],
      /prometheusRule\.alerts\.serverErrors\.threshold must be a non-negative number/,
    ],
    [
      'a negative threshold',
      ['prometheusRule.alerts.cacheNearLimit.threshold=-1'],
      /prometheusRule\.alerts\.cacheNearLimit\.threshold must be a non-negative number/,
    ],
    [
      'a duration in words',
      ['prometheusRule.alerts.storageErrors.for=10 minutes'],
      /prometheusRule\.alerts\.storageErrors\.for must be a Prometheus duration/,
    ],
    [
      'a rate window breaking out of the range',
      ['prometheusRule.rateWindow=5m]) or vector(1'],
      /prometheusRule\.rateWindow must be a Prometheus duration/,
    ],
  ];
  for (const [name, setString, message] of cases) {
    const r = helmTemplate(templateArgs({ set: ['prometheusRule.enabled=true', 'grafanaDashboard.enabled=true'], setString }));
    t.not(r.status, 0, `${name}: render fails`);
    t.match(r.stderr, message, `${name}: the message names the key`);
  }
  const ok = ruleOf(
    render({
      set: ['prometheusRule.enabled=true'],
      setString: ['prometheusRule.selector=job="a"\\, namespace!~"kube-.*"\\,instance=~"10\\\\.0\\\\..*"'],
    }),
  );
  t.match(
    alertRules(ok)[1].expr,
    '{job="a", namespace!~"kube-.*",instance=~"10\\.0\\..*"}',
    'several matchers, regexes and escapes are accepted',
  );
});

t.test('helm lint --strict passes with the dashboard and the rules enabled', { skip }, async (t) => {
  if (typeof realHelm === 'string') {
    t.fail(`CI is set but the real helm binary cannot run: ${realHelm}`);
    return;
  }
  const lint = realHelm.run(['lint', chartDir, '--strict', '--namespace', 'mirror', ...(BOTH_ON.set ?? []).flatMap((s) => ['--set', s])]);
  t.equal(lint.status, 0, `helm lint --strict passes:\n${lint.stdout}${lint.stderr}`);
  t.match(lint.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
});

// ---------------------------------------------------------------------------
// The metric names against a running mirror
// ---------------------------------------------------------------------------

t.test('every oci_registry_ metric the dashboard and the alerts query is exported by a running mirror', { skip }, async (t) => {
  const docs = render(BOTH_ON);
  const used = new Map<string, string[]>();
  for (const e of [...dashboardExprs(dashboardOf(docs).dashboard), ...ruleExprs(ruleOf(docs))]) {
    for (const name of metricNames(e.expr)) used.set(name, [...(used.get(name) ?? []), e.where]);
  }
  t.ok(used.size >= 10, `${used.size} metric names used`);

  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  const img = up.addImage('x/app', { tag: 'v1' });
  const m = await startMirror({
    upstreams: [{ namespace: up.host, host: up.host }],
    lifecycle: { maxCacheSize: { kind: 'bytes', bytes: 1024 ** 3 }, gcIntervalMs: 0 },
  });
  t.teardown(() => m.close());
  // A manifest, a blob and a missing tag, then a collection run: requests, cache lookups, upstream
  // exchanges, downloads and the cache size all have samples.
  const base = `${m.url}/v2/x/app`;
  const accept = { accept: `${MEDIA_TYPES.ociManifest}, ${MEDIA_TYPES.ociIndex}` };
  const status = async (url: string): Promise<number> => {
    const r = await fetch(url, { headers: accept });
    await r.arrayBuffer();
    return r.status;
  };
  t.equal(await status(`${base}/manifests/v1?ns=${up.host}`), 200);
  t.equal(await status(`${base}/blobs/${img.layerDigests[0]}?ns=${up.host}`), 200);
  t.equal(await status(`${base}/manifests/nope?ns=${up.host}`), 404);
  await m.settled();
  await m.server.collector.run();
  const res = await fetch(`${m.url}/metrics`);
  t.equal(res.status, 200);
  const exported = queryableNames(await res.text());
  t.ok(exported.has(`${METRIC_PREFIX}requests_total`), 'the scrape lists the mirror metrics');

  for (const [name, where] of [...used].sort()) {
    t.ok(exported.has(name), `${name} is exported (used by ${where.join('; ')})`);
  }
});

t.test('the metric name check catches a misspelled name and a bare histogram name', async (t) => {
  const exposition = [
    '# HELP oci_registry_requests_total x',
    '# TYPE oci_registry_requests_total counter',
    '# TYPE oci_registry_request_duration_seconds histogram',
    'oci_registry_requests_total{route="blobs"} 1',
  ].join('\n');
  const exported = queryableNames(exposition);
  const names = metricNames(
    'sum(rate(oci_registry_requests_totl{job=~"$job"}[5m])) / rate(oci_registry_request_duration_seconds_bucket[5m]) + foo_oci_registry_x',
  );
  t.same(names, ['oci_registry_requests_totl', 'oci_registry_request_duration_seconds_bucket'], 'whole identifiers with the prefix');
  t.notOk(exported.has('oci_registry_requests_totl'), 'the misspelled name is not exported');
  t.ok(exported.has('oci_registry_requests_total'));
  t.ok(exported.has('oci_registry_request_duration_seconds_bucket'), 'a histogram as _bucket');
  t.ok(exported.has('oci_registry_request_duration_seconds_count'), 'and _count');
  t.notOk(exported.has('oci_registry_request_duration_seconds'), 'a histogram has no bare series');
});

// ---------------------------------------------------------------------------
// promtool: Prometheus parses the PromQL, and the alerts fire when they should
// ---------------------------------------------------------------------------

t.test('promtool accepts the alert rules and every dashboard expression', { skip: promSkip }, async (t) => {
  if (noPromtool) {
    t.fail(`CI is set but promtool cannot run: ${noPromtool}`);
    return;
  }
  const docs = render(BOTH_ON);
  const rules = promtool(['check', 'rules', 'rules.yaml'], { 'rules.yaml': { groups: ruleOf(docs).spec.groups } });
  t.equal(rules.status, 0, `promtool check rules:\n${rules.stdout}${rules.stderr}`);
  t.match(rules.stdout, `SUCCESS: ${ALERTS.length} rules found`);

  // Each dashboard expression as a recording rule, with Grafana's variables as Grafana would fill them in.
  const { dashboard } = dashboardOf(docs);
  const vars = {
    datasource: 'prom',
    ns_label: 'exported_namespace',
    job: '.*',
    registry: '(docker\\\\.io|ghcr\\\\.io)',
    __rate_interval: '2m',
  };
  const exprs = dashboardExprs(dashboard);
  const recording = exprs.map((e, i) => ({ record: `dashboard:expr_${i}`, expr: grafanaInterpolate(e.expr, vars) }));
  for (const r of recording) t.notMatch(r.expr, /\$(?!1")/, `${r.record}: every variable filled in (${r.expr})`);
  const check = promtool(['check', 'rules', 'dashboard.yaml'], { 'dashboard.yaml': { groups: [{ name: 'dashboard', rules: recording }] } });
  t.equal(check.status, 0, `promtool parses all ${exprs.length} dashboard expressions:\n${check.stdout}${check.stderr}`);
});

t.test(
  'promtool rule tests: each alert fires on its condition, after its for duration, and not on healthy series',
  { skip: promSkip },
  async (t) => {
    if (noPromtool) {
      t.fail(`CI is set but promtool cannot run: ${noPromtool}`);
      return;
    }
    const groups = ruleOf(render({ set: ['prometheusRule.enabled=true'] })).spec.groups.map((g: Obj) => ({
      ...g,
      // The annotations are checked by `promtool check rules` above; here only when and for what each fires.
      rules: g.rules.map(({ annotations: _, ...r }: Obj) => r),
    }));
    const s = (name: string, labels: Record<string, string>, values: string) => ({
      series: `oci_registry_${name}{${Object.entries({ job: 'm', ...labels })
        .map(([k, v]) => `${k}="${v}"`)
        .join(',')}}`,
      values,
    });
    const up = (ns: string, status: string, perMinute: number) =>
      s('upstream_requests_total', { exported_namespace: ns, kind: 'blob', status }, `0+${perMinute}x60`);
    const tests = {
      rule_files: ['rules.yaml'],
      evaluation_interval: '1m',
      tests: [
        {
          interval: '1m',
          input_series: [
            // docker.io: a third of the exchanges are 503s. ghcr.io: unreachable, no response at all.
            up('docker.io', '200', 60),
            up('docker.io', '503', 30),
            s('upstream_errors_total', { exported_namespace: 'ghcr.io', kind: 'manifest', code: 'UPSTREAM_UNAVAILABLE' }, '0+10x60'),
            // quay.io: 404s are answers, not failures. registry.k8s.io: 1% 503s, under the threshold.
            up('quay.io', '200', 60),
            up('quay.io', '404', 60),
            up('registry.k8s.io', '200', 6000),
            up('registry.k8s.io', '503', 60),
            // Storage: writes failing now; stat errors long ago only.
            s('storage_errors_total', { operation: 'write_blob' }, '0+6x60'),
            s('storage_errors_total', { operation: 'stat_blob' }, '5x60'),
            // Cache: a at 96% of its limit; b at 50%; c has no limit.
            s('cache_size_bytes', { instance: 'a:8080' }, '96x60'),
            s('cache_size_limit_bytes', { instance: 'a:8080' }, '100x60'),
            s('cache_size_bytes', { instance: 'b:8080' }, '50x60'),
            s('cache_size_limit_bytes', { instance: 'b:8080' }, '100x60'),
            s('cache_size_bytes', { instance: 'c:8080' }, '99x60'),
            // Job m: 1 in 11 blob responses is a 502. Job n: failing readiness probes only.
            s('requests_total', { route: 'blobs', method: 'GET', status: '200' }, '0+600x60'),
            s('requests_total', { route: 'blobs', method: 'GET', status: '502' }, '0+60x60'),
            s('requests_total', { job: 'n', route: 'blobs', method: 'GET', status: '200' }, '0+600x60'),
            s('requests_total', { job: 'n', route: 'health', method: 'GET', status: '503' }, '0+600x60'),
            s('requests_total', { job: 'n', route: 'metrics', method: 'GET', status: '500' }, '0+600x60'),
          ],
          alert_rule_test: [
            { eval_time: '8m', alertname: 'OciRegistryUpstreamFailing', exp_alerts: [] },
            {
              eval_time: '20m',
              alertname: 'OciRegistryUpstreamFailing',
              exp_alerts: [
                { exp_labels: { severity: 'warning', job: 'm', exported_namespace: 'docker.io' } },
                { exp_labels: { severity: 'warning', job: 'm', exported_namespace: 'ghcr.io' } },
              ],
            },
            { eval_time: '3m', alertname: 'OciRegistryStorageErrors', exp_alerts: [] },
            {
              eval_time: '20m',
              alertname: 'OciRegistryStorageErrors',
              exp_alerts: [{ exp_labels: { severity: 'warning', job: 'm', operation: 'write_blob' } }],
            },
            { eval_time: '20m', alertname: 'OciRegistryCacheNearLimit', exp_alerts: [] },
            {
              eval_time: '40m',
              alertname: 'OciRegistryCacheNearLimit',
              exp_alerts: [{ exp_labels: { severity: 'warning', job: 'm', instance: 'a:8080' } }],
            },
            { eval_time: '8m', alertname: 'OciRegistryServerErrors', exp_alerts: [] },
            { eval_time: '20m', alertname: 'OciRegistryServerErrors', exp_alerts: [{ exp_labels: { severity: 'critical', job: 'm' } }] },
          ],
        },
      ],
    };
    const r = promtool(['test', 'rules', 'tests.yaml'], { 'rules.yaml': { groups }, 'tests.yaml': tests });
    t.equal(r.status, 0, `promtool test rules:\n${r.stdout}${r.stderr}`);
    t.match(r.stdout, /SUCCESS/);
  },
);
