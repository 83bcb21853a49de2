import t from 'tap';
import { Readable } from 'node:stream';
import { readCapped, TooLargeError } from '../src/read-capped.js';

t.test('a body up to the limit is read whole', async (t) => {
  const bytes = await readCapped(Readable.from([Buffer.from('abc'), Buffer.from('def')]), 6, 'manifest');
  t.equal(bytes.toString(), 'abcdef');
});

t.test('a body one byte over the limit is refused with a TooLargeError naming what and the limit', async (t) => {
  const err = await readCapped(Readable.from([Buffer.from('abc'), Buffer.from('defg')]), 6, 'manifest').catch((e: unknown) => e);
  t.ok(err instanceof TooLargeError);
  t.match(err, { what: 'manifest', limit: 6, message: 'manifest exceeds 6 bytes' });
});

t.test('an oversized body is destroyed, not read to its end', async (t) => {
  let produced = 0;
  const endless = new Readable({
    read() {
      produced += 1024;
      this.push(Buffer.alloc(1024));
    },
  });
  await t.rejects(readCapped(endless, 4096, 'tag list'), TooLargeError);
  t.ok(endless.destroyed, 'the stream is destroyed');
  t.ok(produced < 64 * 1024, `stopped early (${produced} bytes produced)`);
});

t.test('Uint8Array chunks are accepted like Buffers', async (t) => {
  const bytes = await readCapped(Readable.from([new Uint8Array([1, 2]), new Uint8Array([3])], { objectMode: true }), 3, 'x');
  t.same([...bytes], [1, 2, 3]);
});

t.test('an empty body is an empty buffer', async (t) => {
  t.equal((await readCapped(Readable.from([]), 0, 'x')).length, 0);
});
