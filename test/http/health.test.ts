/**
 * /healthz (liveness) and /readyz (readiness: the storage can be written).
 *
 * "Unwritable storage" is made by replacing the cache root directory with a plain file after the mirror
 * started: the real FilesystemStorage.checkWritable() then fails with ENOTDIR. (Removing permissions
 * would not do: the tests may run as root, which ignores them.)
 */
import t from 'tap';
import { rm, writeFile } from 'node:fs/promises';
import { startMirror } from '../helpers/mirror.js';

async function get(url: string): Promise<{ status: number; contentType: string | null; body: unknown }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  return { status: res.status, contentType: res.headers.get('content-type'), body: JSON.parse(await res.text()) as unknown };
}

t.test('/healthz answers 200 {"status":"ok"}', async (t) => {
  const m = await startMirror();
  t.teardown(() => m.close());
  const r = await get(`${m.url}/healthz`);
  t.equal(r.status, 200);
  t.match(r.contentType, /^application\/json/);
  t.same(r.body, { status: 'ok' });
});

t.test('/readyz answers 200 when the storage is writable', async (t) => {
  const m = await startMirror();
  t.teardown(() => m.close());
  const r = await get(`${m.url}/readyz`);
  t.equal(r.status, 200);
  t.same(r.body, { status: 'ready' });
});

t.test('/readyz answers 503 with a reason when the storage root cannot be written', async (t) => {
  const m = await startMirror();
  t.teardown(() => m.close());
  await rm(m.root, { recursive: true, force: true });
  await writeFile(m.root, 'not a directory');
  const r = await get(`${m.url}/readyz`);
  t.equal(r.status, 503);
  t.same(r.body, { status: 'not ready', reason: 'ENOTDIR' });
});

t.test('/healthz still answers 200 while the storage is unwritable', async (t) => {
  const m = await startMirror();
  t.teardown(() => m.close());
  await rm(m.root, { recursive: true, force: true });
  await writeFile(m.root, 'not a directory');
  t.equal((await get(`${m.url}/healthz`)).status, 200);
});
