import { Counter, Registry } from 'prom-client';
import t from 'tap';
import { CounterTally } from '../../src/metrics/counter-tally.js';

async function values(registry: Registry): Promise<{ labels: Record<string, string | number>; value: number }[]> {
  const [metric] = await registry.getMetricsAsJSON();
  return (metric?.values ?? []).map((v) => ({ labels: v.labels as Record<string, string | number>, value: v.value }));
}

t.test('counts per label set reach the counter when it is read, once each', async (t) => {
  const registry = new Registry();
  const tally = new CounterTally(['route', 'method', 'status'] as const);
  const counter: Counter<'route' | 'method' | 'status'> = new Counter({
    name: 'x_total',
    help: 'x',
    labelNames: ['route', 'method', 'status'],
    registers: [registry],
    collect: () => tally.flush(counter),
  });
  tally.inc(1, 'manifests', 'GET', '200');
  tally.inc(1, 'manifests', 'GET', '200');
  tally.inc(1, 'manifests', 'HEAD', '200');
  tally.inc(1, 'blobs', 'GET', '404');
  t.same(await values(registry), [
    { labels: { route: 'manifests', method: 'GET', status: '200' }, value: 2 },
    { labels: { route: 'manifests', method: 'HEAD', status: '200' }, value: 1 },
    { labels: { route: 'blobs', method: 'GET', status: '404' }, value: 1 },
  ]);
  // A second read adds nothing; new counts add to what was read.
  t.same(
    (await values(registry)).map((v) => v.value),
    [2, 1, 1],
  );
  tally.inc(1, 'manifests', 'GET', '200');
  t.same(
    (await values(registry)).map((v) => v.value),
    [3, 1, 1],
  );
});

t.test('fewer labels, and amounts other than 1', async (t) => {
  const registry = new Registry();
  const tally = new CounterTally(['namespace', 'source'] as const);
  const counter: Counter<'namespace' | 'source'> = new Counter({
    name: 'bytes_total',
    help: 'x',
    labelNames: ['namespace', 'source'],
    registers: [registry],
    collect: () => tally.flush(counter),
  });
  tally.inc(100, 'docker.io', 'cache');
  tally.inc(23, 'docker.io', 'cache');
  tally.inc(7, 'ghcr.io', 'upstream');
  t.same(await values(registry), [
    { labels: { namespace: 'docker.io', source: 'cache' }, value: 123 },
    { labels: { namespace: 'ghcr.io', source: 'upstream' }, value: 7 },
  ]);
});
