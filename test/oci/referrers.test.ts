import t from 'tap';
import { parseDigest } from '../../src/oci/digest.js';
import { OCI_INDEX, OCI_MANIFEST } from '../../src/oci/media-types.js';
import { filterByArtifactType, parseIndexManifests, referrersIndex, referrersTag } from '../../src/oci/referrers.js';

const D = `sha256:${'a'.repeat(64)}`;

t.test('the referrers tag is <alg>-<hex>, the hex cut to 64 characters', async (t) => {
  t.equal(referrersTag(parseDigest(D)), `sha256-${'a'.repeat(64)}`);
  const long = parseDigest(`sha512:${'0123456789abcdef'.repeat(8)}`);
  t.equal(referrersTag(long), `sha512-${'0123456789abcdef'.repeat(4)}`);
});

t.test('documents that are not an index parse to undefined', async (t) => {
  for (const text of ['', 'not json', '[]', 'null', '"x"', '{}', '{"manifests":{}}', '{"manifests":"x"}']) {
    t.equal(parseIndexManifests(Buffer.from(text)), undefined, JSON.stringify(text));
  }
});

t.test('an index parses to its usable descriptors, unknown fields kept', async (t) => {
  const good = { mediaType: OCI_MANIFEST, digest: D, size: 10, artifactType: 'x', annotations: { a: 'b' } };
  const doc = { manifests: [good, { mediaType: OCI_MANIFEST, digest: D, size: 1.5 }, { mediaType: '', digest: D, size: 1 }] };
  t.same(parseIndexManifests(Buffer.from(JSON.stringify(doc))), [good]);
});

t.test('the answer is an OCI index with schemaVersion 2, filtered by exact artifactType', async (t) => {
  const a = { mediaType: OCI_MANIFEST, digest: D, size: 1, artifactType: 'application/a' };
  const b = { mediaType: OCI_MANIFEST, digest: D, size: 2 };
  t.same(filterByArtifactType([a, b], 'application/a'), [a]);
  t.same(filterByArtifactType([a, b], 'application/A'), [], 'an exact comparison');
  t.same(JSON.parse(referrersIndex([b]).toString()), { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [b] });
});
