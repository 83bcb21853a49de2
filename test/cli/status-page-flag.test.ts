/**
 * `--no-status-page` / `NO_STATUS_PAGE` on the built CLI, the way users run it: the page is on by
 * default, and the flag or its environment variable turns it off (404, like any unknown path).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { startMirrorProcess } from '../helpers/mirror-process.js';

async function statusOf(t: Test, options: { args?: string[]; env?: Record<string, string> }): Promise<number> {
  const root = await mkdtemp(join(tmpdir(), 'status-flag-'));
  const m = await startMirrorProcess({ root, ...options });
  t.teardown(async () => {
    await m.stop();
    await rm(root, { recursive: true, force: true });
  });
  const r = await fetch(`${m.url}/`);
  await r.arrayBuffer();
  return r.status;
}

t.test('the status page is served by default', async (t) => {
  t.equal(await statusOf(t, {}), 200);
});

t.test('--no-status-page turns it off', async (t) => {
  t.equal(await statusOf(t, { args: ['--no-status-page'] }), 404);
});

t.test('NO_STATUS_PAGE turns it off', async (t) => {
  t.equal(await statusOf(t, { env: { NO_STATUS_PAGE: '1' } }), 404);
});
