import { collectDefaultMetrics, Registry } from 'prom-client';

/** Our metrics all start with this; Node's process metrics keep their standard names. */
export const METRIC_PREFIX = 'oci_registry_';

/** A registry of its own per server (not prom-client's global one), with the default Node process metrics. */
export function createMetricsRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return registry;
}
