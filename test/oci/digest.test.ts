import t from 'tap';
import { createHash } from 'node:crypto';
import { createDigester, digestOf, looksLikeDigest, parseDigest, tryParseDigest } from '../../src/oci/digest.js';
import { OciError } from '../../src/oci/errors.js';

const HEX64 = 'a'.repeat(64);
const HEX128 = 'b'.repeat(128);

t.test('a sha256 digest of 64 lowercase hex parses into algorithm, hex and the canonical value', async (t) => {
  const d = tryParseDigest(`sha256:${HEX64}`);
  t.same(d, { algorithm: 'sha256', hex: HEX64, value: `sha256:${HEX64}` });
});

t.test('a sha512 digest of 128 lowercase hex parses', async (t) => {
  const d = tryParseDigest(`sha512:${HEX128}`);
  t.equal(d?.algorithm, 'sha512');
  t.equal(d?.hex, HEX128);
});

t.test('a digest with the wrong hex length for its algorithm is refused', async (t) => {
  t.equal(tryParseDigest(`sha256:${'a'.repeat(63)}`), undefined);
  t.equal(tryParseDigest(`sha256:${'a'.repeat(65)}`), undefined);
  t.equal(tryParseDigest(`sha256:${HEX128}`), undefined);
  t.equal(tryParseDigest(`sha512:${HEX64}`), undefined);
});

t.test('uppercase hex, unknown algorithms and malformed strings are refused', async (t) => {
  for (const bad of [
    `sha256:${'A'.repeat(64)}`,
    `SHA256:${HEX64}`,
    `md5:${'a'.repeat(32)}`,
    `sha384:${'a'.repeat(96)}`,
    `sha256${HEX64}`,
    `sha256:`,
    `:${HEX64}`,
    `sha256:${'g'.repeat(64)}`,
    ` sha256:${HEX64}`,
    `sha256:${HEX64} `,
    `sha256:${HEX64}\n`,
    '',
    'latest',
  ]) {
    t.equal(tryParseDigest(bad), undefined, JSON.stringify(bad));
  }
});

t.test('parseDigest throws DIGEST_INVALID for an invalid digest and truncates the echoed input', async (t) => {
  t.throws(() => parseDigest('sha256:totallywrong'), { name: 'OciError', code: 'DIGEST_INVALID' });
  try {
    parseDigest(`sha256:${'z'.repeat(1000)}`);
    t.fail('should throw');
  } catch (e) {
    t.ok(e instanceof OciError);
    const detail = (e as OciError).detail as { digest: string };
    t.ok(detail.digest.length <= 200, 'detail is bounded');
  }
});

t.test('parseDigest returns the parsed digest for a valid one', async (t) => {
  t.equal(parseDigest(`sha256:${HEX64}`).value, `sha256:${HEX64}`);
});

t.test('looksLikeDigest tells digest-shaped references from tags', async (t) => {
  t.ok(looksLikeDigest('sha256:totallywrong'));
  t.ok(looksLikeDigest(`sha256:${HEX64}`));
  t.ok(looksLikeDigest('sha256+b64u:abc'));
  t.notOk(looksLikeDigest('latest'));
  t.notOk(looksLikeDigest('v1.2.3'));
  t.notOk(looksLikeDigest('.INVALID_MANIFEST_NAME'));
});

t.test('digestOf hashes the exact bytes with sha256 by default and sha512 on request', async (t) => {
  const bytes = Buffer.from('{"schemaVersion":2}');
  t.equal(digestOf(bytes), `sha256:${createHash('sha256').update(bytes).digest('hex')}`);
  t.equal(digestOf(bytes, 'sha512'), `sha512:${createHash('sha512').update(bytes).digest('hex')}`);
  t.not(digestOf(Buffer.from('{"schemaVersion": 2}')), digestOf(bytes), 'whitespace changes the digest');
});

t.test('createDigester returns an incremental hash for the algorithm', async (t) => {
  const h = createDigester('sha256');
  h.update(Buffer.from('ab'));
  h.update(Buffer.from('c'));
  t.equal(`sha256:${h.digest('hex')}`, digestOf(Buffer.from('abc')));
});
