/**
 * The last success / last error record behind the status page's upstream table.
 */
import t from 'tap';
import { OciError } from '../../src/oci/errors.js';
import { MAX_UNLISTED_NAMESPACES, UpstreamHealth } from '../../src/status/upstream-health.js';

t.test('401, 403, 429 and 5xx are errors; 2xx and 404 are successes', async (t) => {
  const h = new UpstreamHealth(
    () => true,
    () => 1000,
  );
  for (const status of [401, 403, 429, 500, 502, 503]) {
    h.onResponse('ns', 'manifest', status);
    t.match(h.get('ns')?.lastError?.message, `manifest: HTTP ${status}`, `${status} is an error`);
  }
  t.equal(h.get('ns')?.lastSuccess, undefined);
  for (const status of [200, 404]) {
    h.onResponse('ns', 'blob', status);
    t.equal(h.get('ns')?.lastSuccess?.message, `blob: HTTP ${status}`, `${status} is a success`);
  }
});

t.test('a transport error shows its message and reason, a failed download its result', async (t) => {
  const h = new UpstreamHealth(
    () => true,
    () => 1000,
  );
  h.onError(
    'ns',
    'tags',
    'UPSTREAM_TIMEOUT',
    'ns.example',
    new OciError('UPSTREAM_TIMEOUT', 'upstream timed out', { detail: { namespace: 'ns', reason: 'UND_ERR_HEADERS_TIMEOUT' } }),
  );
  t.equal(h.get('ns')?.lastError?.message, 'tags: upstream timed out (UND_ERR_HEADERS_TIMEOUT)');
  h.downloadFinished('ns', 'digest_mismatch');
  t.match(h.get('ns')?.lastError?.message, /did not match its digest/);
  h.downloadFinished('ns', 'stored');
  t.match(h.get('ns')?.lastError?.message, /did not match its digest/, 'a stored download changes nothing');
});

t.test('a long error text is cut', async (t) => {
  const h = new UpstreamHealth(() => true);
  h.onError('ns', 'blob', 'UPSTREAM_ERROR', 'ns.example', new OciError('UPSTREAM_ERROR', 'x'.repeat(10_000)));
  t.equal(h.get('ns')?.lastError?.message.length, 300);
});

t.test('client-chosen (unlisted) namespaces cannot grow the record without bound; configured ones stay', async (t) => {
  const h = new UpstreamHealth((ns) => ns.startsWith('configured'));
  h.onResponse('configured-1', 'manifest', 200);
  for (let i = 0; i < 10_000; i++) h.onError(`attacker-${i}.example`, 'manifest', 'UPSTREAM_UNAVAILABLE', `attacker-${i}.example`);
  h.onResponse('configured-2', 'manifest', 200);
  const names = h.namespaces();
  t.equal(names.length, MAX_UNLISTED_NAMESPACES + 2);
  t.ok(h.get('configured-1'), 'the oldest configured namespace is kept');
  t.ok(h.get('configured-2'));
  t.ok(h.get('attacker-9999.example'), 'the newest unlisted ones are kept');
  t.notOk(h.get('attacker-0.example'), 'the oldest unlisted ones went');
});
