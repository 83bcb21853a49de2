/**
 * The status page in a real headless browser: Debian's `chromium`, driven by playwright-core.
 *
 * The page renders its sections; a download from the fixture upstream with a slow body appears while it
 * runs (the page refreshes itself), shows its progress, and leaves when done; a reload lists the new tag;
 * with JavaScript off the static page is complete; names planted in the cache run no script.
 *
 * A screenshot of the page with a download in progress is taken every run. UPDATE_SCREENSHOT=1 writes
 * it to docs/status-page.png (the README's picture); otherwise it goes to a temp dir, so a test run
 * leaves the working tree as it was.
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import t, { type Test } from 'tap';
import { randomBytesSeeded } from '../fixtures/content.js';
import { startFixtureUpstream, type AddedImage, type FixtureUpstream } from '../fixtures/upstream.js';
import { REPO_ROOT } from '../helpers/mirror-process.js';
import { startMirror, type TestMirror } from '../helpers/mirror.js';
import { requireBinary } from './harness/binaries.js';
import { freePort, makeTempDir } from './harness/util.js';

const CHROMIUM = '/usr/bin/chromium';
const OCI_ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json';

async function launch(t: Test): Promise<Browser> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-background-networking'],
    headless: true,
  });
  t.teardown(() => browser.close());
  return browser;
}

/** Fails the test on any script dialog (an injected alert), page error or console error (a CSP violation). */
function watch(t: Test, page: Page): void {
  page.on('dialog', (d) => {
    t.fail(`a script dialog opened: ${d.message()}`);
    void d.dismiss();
  });
  page.on('pageerror', (e) => t.fail(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') t.fail(`console error: ${m.text()}`);
  });
}

async function pull(m: TestMirror, ns: string, repo: string, tag: string, img: AddedImage): Promise<void> {
  const r = await fetch(`${m.url}/v2/${repo}/manifests/${tag}?ns=${ns}`, { headers: { accept: OCI_ACCEPT } });
  if (r.status !== 200) throw new Error(`manifest ${repo}:${tag}: ${r.status}`);
  await r.arrayBuffer();
  for (const d of [img.configDigest, ...img.layerDigests]) {
    const b = await fetch(`${m.url}/v2/${repo}/blobs/${d}?ns=${ns}`);
    if (b.status !== 200) throw new Error(`blob ${d}: ${b.status}`);
    await b.arrayBuffer();
  }
}

interface Scene {
  up: FixtureUpstream;
  m: TestMirror;
  slow: AddedImage;
}

/** A mirror with a few cached images, one upstream that is down, and an image whose layer arrives slowly. */
async function scene(t: Test): Promise<Scene> {
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  const deadPort = await freePort(); // nothing listens here: the upstream that is down
  const m = await startMirror({
    upstreams: [
      { namespace: 'docker.io', host: up.host },
      { namespace: 'ghcr.io', host: up.host },
      { namespace: 'registry.internal:5000', host: `127.0.0.1:${deadPort}`, connectTimeoutMs: 2000 },
    ],
    lifecycle: { maxCacheSize: { kind: 'bytes', bytes: 20 * 1024 * 1024 }, gcIntervalMs: 0 },
  });
  t.teardown(() => m.close());
  const images: Array<[string, string, string, AddedImage]> = [
    ['docker.io', 'library/alpine', '3.20', up.addImage('library/alpine', { tag: '3.20', layers: [randomBytesSeeded(900_000, 1)] })],
    [
      'docker.io',
      'library/nginx',
      '1.27',
      up.addImage('library/nginx', { tag: '1.27', layers: [randomBytesSeeded(1_400_000, 2), randomBytesSeeded(300_000, 3)] }),
    ],
    ['ghcr.io', 'acme/api', 'v2.4.1', up.addImage('acme/api', { tag: 'v2.4.1', layers: [randomBytesSeeded(600_000, 4)] })],
  ];
  for (const [ns, repo, tag, img] of images) await pull(m, ns, repo, tag, img);
  await m.settled();
  const [ns, repo, tag, img] = images[0] as [string, string, string, AddedImage];
  await pull(m, ns, repo, tag, img); // a second pull: cache hits
  const failed = await fetch(`${m.url}/v2/team/app/manifests/v1?ns=registry.internal:5000`, { headers: { accept: OCI_ACCEPT } });
  await failed.arrayBuffer();

  // 4 MiB in 64 KiB chunks every 80 ms: about 5 s of download to watch.
  const slow = up.addImage('library/postgres', { tag: '16', layers: [randomBytesSeeded(4 * 1024 * 1024, 5)] });
  up.setBlobFault(slow.layerDigests[0] as string, { kind: 'slow', chunkSize: 64 * 1024, delayMs: 80 });
  return { up, m, slow };
}

t.test('the status page in a real browser: sections, a live download, then the new tag', async (t) => {
  if (!requireBinary(t, CHROMIUM)) return;
  const { m, slow } = await scene(t);
  const browser = await launch(t);
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: 'light' });
  const page = await context.newPage();
  watch(t, page);

  const res = await page.goto(`${m.url}/`);
  t.equal(res?.status(), 200);
  t.equal(await page.title(), 'oci-registry status');
  for (const id of ['cache', 'traffic', 'downloads', 'upstreams', 'repositories'])
    t.ok(await page.isVisible(`section#${id}`), `section ${id} is shown`);
  t.match(await page.textContent('#repositories'), 'docker.io/library/alpine');
  t.match(await page.textContent('#upstreams'), /registry\.internal:5000[\s\S]*ECONNREFUSED/);
  t.equal(await page.locator('tr.download').count(), 0, 'no download yet');
  t.notOk(await page.isVisible('#manual-refresh'), 'with JavaScript the page refreshes itself: no reload hint');

  // The pull starts after the page loaded: only the page's own refresh can show it.
  const layer = slow.layerDigests[0] as string;
  const pulling = pull(m, 'docker.io', 'library/postgres', '16', slow);
  await page.waitForSelector(`tr.download[data-digest="${layer}"]`, { timeout: 20_000 });
  await page.waitForFunction(
    (digest) => {
      const p = document.querySelector<HTMLProgressElement>(`tr.download[data-digest="${digest}"] progress`);
      return p !== null && p.value > 0 && p.value < p.max;
    },
    layer,
    { timeout: 20_000, polling: 100 },
  );
  t.pass('the download shows with partial progress');
  t.match(await page.textContent(`tr.download[data-digest="${layer}"]`), /docker\.io[\s\S]*MiB \/ 4\.0 MiB/);

  const shot = await page.screenshot({ fullPage: true });
  t.same([...shot.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'a PNG');
  const dir = process.env['UPDATE_SCREENSHOT'] ? join(REPO_ROOT, 'docs') : await makeTempDir('status-shot');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'status-page.png'), shot);
  t.ok((await readFile(join(dir, 'status-page.png'))).length > 10_000, `screenshot written to ${join(dir, 'status-page.png')}`);
  if (!process.env['UPDATE_SCREENSHOT']) await rm(dir, { recursive: true, force: true });

  await pulling;
  await page.waitForSelector('tr.download', { state: 'detached', timeout: 30_000 });
  t.pass('the download leaves the list once done');
  await m.settled();
  await page.reload();
  t.match(await page.textContent('#repositories'), /docker\.io\/library\/postgres\s*16/, 'a reload lists the new tag');
});

t.test('with JavaScript off the page is complete', async (t) => {
  if (!requireBinary(t, CHROMIUM)) return;
  const { m } = await scene(t);
  const browser = await launch(t);
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  await page.goto(`${m.url}/`);
  for (const id of ['cache', 'traffic', 'downloads', 'upstreams', 'repositories'])
    t.ok(await page.isVisible(`section#${id}`), `section ${id} is shown`);
  t.equal(await page.locator('#repositories tr.tag').count(), 3);
  t.ok(await page.isVisible('#manual-refresh'), 'says how to refresh');
});

t.test('names planted in the cache run no script in the browser', async (t) => {
  if (!requireBinary(t, CHROMIUM)) return;
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  const m = await startMirror({ upstreams: [{ namespace: 'registry.example', host: up.host }] });
  t.teardown(() => m.close());
  await m.storage.putTag({ namespace: 'registry.example', repository: 'x<script>alert(1)</script>' }, '<img src=x onerror=alert(2)>', {
    digest: 'sha256:"><img src=x onerror=alert(3)>',
    mediaType: 'text/html',
    size: 1,
    checkedAt: new Date(),
  });
  const browser = await launch(t);
  const page = await browser.newPage();
  watch(t, page);
  await page.goto(`${m.url}/`);
  t.equal(await page.locator('img').count(), 0, 'no img element');
  t.equal(await page.locator('script').count(), 1, "only the page's own script");
  t.match(await page.textContent('#repositories'), 'x<script>alert(1)</script>', 'the name shows as text');
  t.match(await page.textContent('#repositories'), '<img src=x onerror=alert(2)>');
});
