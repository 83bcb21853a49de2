/**
 * A client joining a download reads it through a FillingSpoolReader, which fills the sender's buffers.
 * When that client stops reading, the sender gives back the buffer it filled behind the stalled write
 * (rewind) instead of holding it; the bytes are read again from the spool when the client reads again.
 */
import t from 'tap';
import { FillingSpoolReader } from '../../src/proxy/download/spool-reader.js';
import { randomBytesSeeded, sha256 } from '../fixtures/content.js';
import { startFixtureUpstream } from '../fixtures/upstream.js';
import { eventually } from '../helpers/eventually.js';
import { startMirror } from '../helpers/mirror.js';
import { rawGet } from '../helpers/raw-client.js';

const MiB = 1024 * 1024;

t.test('a follower that stops reading gives back its filled buffer, and gets exact bytes when it reads again', async (t) => {
  const rewinds: number[] = [];
  const original = FillingSpoolReader.prototype.rewind;
  t.equal(typeof original, 'function', 'a download reader can take bytes back');
  if (typeof original !== 'function') return;
  FillingSpoolReader.prototype.rewind = function (this: FillingSpoolReader, bytes: number) {
    rewinds.push(bytes);
    original.call(this, bytes);
  };
  t.teardown(() => {
    FillingSpoolReader.prototype.rewind = original;
  });

  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  const bytes = randomBytesSeeded(24 * MiB, 21);
  const digest = up.addBlob(bytes);
  up.setBlobFault(digest, { kind: 'slow', chunkSize: MiB, delayMs: 40 });
  const mirror = await startMirror({ upstreams: [{ namespace: up.host, host: up.host }], sendTimeoutMs: 0 });
  t.teardown(() => mirror.close());
  const path = `/v2/library/app/blobs/${digest}?ns=${up.host}`;

  const leader = fetch(`${mirror.url}${path}`).then(async (r) => sha256(Buffer.from(await r.arrayBuffer())));
  await eventually(() => up.blobGets(digest) > 0);
  const follower = rawGet(Number(new URL(mirror.url).port), path, { readBuffer: 64 * 1024 });
  t.teardown(() => follower.socket.destroy());
  t.equal((await follower.head).status, 200, 'the follower joined the download');
  t.equal(await leader, digest, 'the leader got the blob');
  await mirror.settled();
  t.ok(await eventually(() => rewinds.length > 0, 10_000), `the follower's filled buffer was taken back (${rewinds.join(', ')} bytes)`);
  t.equal(up.blobGets(digest), 1, 'one download');

  follower.readAll();
  await eventually(() => follower.bodyBytes >= bytes.length || follower.socket.destroyed, 60_000);
  t.equal(follower.bodyBytes, bytes.length, 'every byte');
  t.equal(follower.bodyDigest(), digest, 'exact bytes after reading again');
});
