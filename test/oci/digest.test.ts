import t from 'tap';
import { tryParseDigest, digestOf } from '../../src/oci/digest.js';

t.test('a sha256 digest of 64 lowercase hex parses', async (t) => {
  const d = tryParseDigest(digestOf(Buffer.from('x')));
  t.equal(d?.algorithm, 'sha256');
});
