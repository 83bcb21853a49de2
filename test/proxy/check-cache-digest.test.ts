import { writeFile } from 'node:fs/promises';
import t from 'tap';
import { type FilesystemStorage } from '../../src/storage/filesystem/filesystem-storage.js';
import { randomBytesSeeded, sha256 } from '../fixtures/content.js';
import { startFixtureUpstream } from '../fixtures/upstream.js';
import { startMirror } from '../helpers/mirror.js';

t.test('with --check-cache-digest a corrupt cached blob is cut off, dropped, and fetched again on the next request', async (t) => {
  const up = await startFixtureUpstream();
  const bytes = randomBytesSeeded(2_000_000, 7);
  const digest = up.addBlob(bytes);
  const m = await startMirror({ upstreams: [{ namespace: 'docker.io', host: up.host }], checkCacheDigest: true });
  t.teardown(async () => {
    await m.close();
    await up.close();
  });
  const url = `${m.url}/v2/library/x/blobs/${digest}`;
  const first = Buffer.from(await (await fetch(url)).arrayBuffer());
  t.equal(sha256(first), digest, 'first pull is good and cached');
  t.equal(up.blobGets(digest), 1);
  await m.settled();

  const corrupt = Buffer.from(bytes);
  corrupt[12345] = (corrupt[12345] ?? 0) ^ 1;
  await writeFile((m.storage as FilesystemStorage).paths.blob(digest), corrupt);

  const second = await fetch(url);
  await t.rejects(second.arrayBuffer(), 'the corrupt transfer is aborted before it completes');
  // The drop happens as the stream ends; give the delete a moment.
  for (let i = 0; i < 50 && (await m.storage.statBlob(digest)); i++) await new Promise((r) => setTimeout(r, 20));
  t.equal(await m.storage.statBlob(digest), undefined, 'corrupt blob dropped');

  const third = Buffer.from(await (await fetch(url)).arrayBuffer());
  t.equal(sha256(third), digest, 'next request fetched it again');
  t.equal(up.blobGets(digest), 2);
});
