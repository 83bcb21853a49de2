/**
 * Crash safety: the mirror CLI is SIGKILLed in the middle of a large download. Nothing under blobs/ or
 * manifests/ may fail its hash, a restart on the same root sweeps tmp/, and the pull then succeeds.
 */
import { createHash } from 'node:crypto';
import { eventually } from '../helpers/eventually.js';
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { randomBytesSeeded } from '../fixtures/content.js';
import { startFixtureUpstream } from '../fixtures/upstream.js';
import { startMirrorProcess, type MirrorProcess } from '../helpers/mirror-process.js';
import { listFiles } from '../helpers/files.js';

const MiB = 1024 * 1024;
const OCI_ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json';

/** Paths under blobs/ and manifests/ whose content does not hash to their name. */
async function corruptObjects(root: string): Promise<string[]> {
  const bad: string[] = [];
  for (const file of await listFiles(join(root, 'blobs'))) {
    const [alg, , hex] = file.slice(join(root, 'blobs').length + 1).split('/');
    const h = createHash(alg ?? 'sha256');
    for await (const c of createReadStream(file)) h.update(c as Buffer);
    if (h.digest('hex') !== hex) bad.push(file);
  }
  for (const file of await listFiles(join(root, 'manifests'))) {
    const [alg, , hex] = file.slice(join(root, 'manifests').length + 1).split('/');
    const data = await readFile(file);
    const nl = data.indexOf(0x0a);
    if (
      nl < 0 ||
      createHash(alg ?? 'sha256')
        .update(data.subarray(nl + 1))
        .digest('hex') !== hex
    )
      bad.push(file);
  }
  return bad;
}

async function start(t: Test, root: string, upHost: string): Promise<MirrorProcess> {
  const proc = await startMirrorProcess({
    root,
    startTimeoutMs: 60_000,
    configYaml: `- namespace: "${upHost}"\n  host: "${upHost}"\n  tls: false\n`,
  });
  t.teardown(() => proc.stop());
  return proc;
}

t.test('SIGKILL mid-download leaves no corrupt object; a restart sweeps tmp/ and the pull then succeeds', async (t) => {
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  const big = randomBytesSeeded(64 * MiB, 64);
  const img = up.addImage('x/app', { tag: 'v1', layers: [big, randomBytesSeeded(300 * 1024, 65)] });
  const layer = img.layerDigests[0] as string;
  up.setBlobFault(layer, { kind: 'slow', chunkSize: MiB, delayMs: 40 });
  const root = await mkdtemp(join(tmpdir(), 'oci-crash-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));

  const first = await start(t, root, up.host);
  const url = (p: string) => `${first.url}/v2/x/app/${p}?ns=${up.host}`;
  // Some finished objects to keep: the manifest and the small layer.
  const man = await fetch(url('manifests/v1'), { headers: { accept: OCI_ACCEPT } });
  t.equal(man.status, 200);
  await man.arrayBuffer();
  const small = await fetch(url(`blobs/${img.layerDigests[1]}`));
  t.equal(small.status, 200);
  await small.arrayBuffer();

  // Start the big one and kill the mirror once a quarter of it went through.
  const res = await fetch(url(`blobs/${layer}`));
  t.equal(res.status, 200, 'the big download started');
  let received = 0;
  let clientError: string | undefined;
  let killed: Promise<unknown> | undefined;
  try {
    for await (const chunk of res.body ?? []) {
      received += (chunk as Uint8Array).length;
      if (received >= 16 * MiB && !killed) killed = first.kill();
    }
  } catch (e) {
    clientError = (e as Error).message;
  }
  const exit = (await killed) as { signal: string | null } | undefined;
  t.equal(exit?.signal, 'SIGKILL', 'the mirror was SIGKILLed');
  t.ok(received < big.length, `the client got ${received} of ${big.length} bytes`);
  t.ok(clientError !== undefined, `the client saw the transfer cut (${clientError ?? 'no error'})`);

  t.same(await corruptObjects(root), [], 'after the crash, every object under blobs/ and manifests/ hashes to its name');
  const blobFiles = await listFiles(join(root, 'blobs'));
  t.notOk(
    blobFiles.some((f) => f.endsWith(layer.slice(7))),
    'the half-downloaded blob is not visible under blobs/',
  );
  const leftovers = await listFiles(join(root, 'tmp'));
  t.comment(`the crash left ${leftovers.length} file(s) in tmp/`);

  // Restart on the same root: tmp/ is swept at start.
  const second = await start(t, root, up.host);
  t.same(await listFiles(join(root, 'tmp')), [], 'tmp/ is empty after the restart');
  t.same(await corruptObjects(root), [], 'objects still intact after the restart');

  up.setBlobFault(layer, undefined);
  const gets = up.blobGets(layer);
  const again = await fetch(`${second.url}/v2/x/app/blobs/${layer}?ns=${up.host}`);
  t.equal(again.status, 200);
  const h = createHash('sha256');
  for await (const chunk of again.body ?? []) h.update(chunk as Uint8Array);
  t.equal(`sha256:${h.digest('hex')}`, layer, 'the pull after the restart hashes to the digest');
  t.equal(up.blobGets(layer), gets + 1, 'it was downloaded afresh');
  const man2 = await fetch(`${second.url}/v2/x/app/manifests/${img.digest}?ns=${up.host}`, { headers: { accept: OCI_ACCEPT } });
  t.equal(man2.status, 200, 'the manifest cached before the crash is served');
  t.same(Buffer.from(await man2.arrayBuffer()), img.bytes);
  // The download commits just behind the client's last byte.
  const stored = async () => (await listFiles(join(root, 'blobs'))).some((f) => f.endsWith(layer.slice(7)));
  t.ok(await eventually(stored), 'the big blob is now stored');
  t.same(await corruptObjects(root), [], 'every object hashes to its name at the end');
});
