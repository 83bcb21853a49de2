import t from 'tap';
import {
  baseMediaType,
  detectManifestMediaType,
  DOCKER_MANIFEST,
  DOCKER_MANIFEST_LIST,
  DOCKER_MANIFEST_V1,
  DOCKER_MANIFEST_V1_SIGNED,
  INDEX_TYPES,
  isAcceptable,
  OCI_INDEX,
  OCI_MANIFEST,
  UPSTREAM_MANIFEST_ACCEPT,
} from '../../src/oci/media-types.js';

const CONTAINERD_ACCEPT = [DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX, '*/*'].join(', ');

t.test('the Accept sent upstream lists every manifest type, schema1 at lower preference', async (t) => {
  for (const type of [OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST]) {
    t.ok(UPSTREAM_MANIFEST_ACCEPT.includes(type), type);
  }
  t.match(UPSTREAM_MANIFEST_ACCEPT, `${DOCKER_MANIFEST_V1_SIGNED};q=0.5`);
});

t.test('index types are the OCI index and the Docker manifest list', async (t) => {
  t.ok(INDEX_TYPES.has(OCI_INDEX));
  t.ok(INDEX_TYPES.has(DOCKER_MANIFEST_LIST));
  t.notOk(INDEX_TYPES.has(OCI_MANIFEST));
});

t.test('baseMediaType strips parameters and lowercases', async (t) => {
  t.equal(baseMediaType('application/json; charset=utf-8'), 'application/json');
  t.equal(baseMediaType(' Application/VND.OCI.image.manifest.v1+JSON '), OCI_MANIFEST);
  t.equal(baseMediaType(''), '');
});

t.test('no Accept header accepts any stored type (old clients)', async (t) => {
  t.ok(isAcceptable(OCI_INDEX, []));
  t.ok(isAcceptable(DOCKER_MANIFEST_V1_SIGNED, []));
  t.ok(isAcceptable(OCI_MANIFEST, ['']));
  t.ok(isAcceptable(OCI_MANIFEST, [' , ']));
});

t.test('the exact type in Accept is acceptable; others are not', async (t) => {
  t.ok(isAcceptable(OCI_MANIFEST, [OCI_MANIFEST]));
  t.notOk(isAcceptable(OCI_INDEX, [OCI_MANIFEST]));
  t.notOk(isAcceptable(DOCKER_MANIFEST, [OCI_MANIFEST]));
});

t.test('the conformance suite Accept (OCI manifest + OCI index) accepts both OCI types', async (t) => {
  const accept = [`${OCI_MANIFEST}, ${OCI_INDEX}`];
  t.ok(isAcceptable(OCI_MANIFEST, accept));
  t.ok(isAcceptable(OCI_INDEX, accept));
  t.notOk(isAcceptable(DOCKER_MANIFEST, accept));
});

t.test("containerd's Accept list with */* accepts every type", async (t) => {
  for (const type of [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST_V1_SIGNED]) {
    t.ok(isAcceptable(type, [CONTAINERD_ACCEPT]), type);
  }
});

t.test('several Accept headers are combined', async (t) => {
  t.ok(isAcceptable(OCI_INDEX, [OCI_MANIFEST, OCI_INDEX]));
});

t.test('type/* wildcards match their major type only', async (t) => {
  t.ok(isAcceptable(OCI_MANIFEST, ['application/*']));
  t.notOk(isAcceptable(OCI_MANIFEST, ['text/*']));
});

t.test('matching ignores case and parameters of the stored type and of the Accept entries', async (t) => {
  t.ok(isAcceptable(`${OCI_MANIFEST}; charset=utf-8`, [OCI_MANIFEST.toUpperCase()]));
  t.ok(isAcceptable(OCI_MANIFEST, [`${OCI_MANIFEST};q=0.9`]));
});

t.test('q=0 entries refuse their type', async (t) => {
  t.notOk(isAcceptable(OCI_MANIFEST, [`${OCI_MANIFEST};q=0`]));
  t.notOk(isAcceptable(OCI_MANIFEST, [`${OCI_MANIFEST}; q=0.000`]));
  t.ok(isAcceptable(OCI_MANIFEST, [`${OCI_MANIFEST};q=0.5`]));
});

t.test('the upstream Content-Type names the stored media type when it is a manifest type', async (t) => {
  t.equal(detectManifestMediaType(`${DOCKER_MANIFEST}; charset=utf-8`, Buffer.from('{}')), DOCKER_MANIFEST);
});

t.test('a generic Content-Type falls back to the document mediaType field', async (t) => {
  const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] }));
  t.equal(detectManifestMediaType('application/json', bytes), OCI_INDEX);
  t.equal(detectManifestMediaType(undefined, bytes), OCI_INDEX);
  t.equal(detectManifestMediaType('application/octet-stream', bytes), OCI_INDEX);
  t.equal(detectManifestMediaType('text/plain', bytes), OCI_INDEX);
});

t.test('without a mediaType field, the document shape decides: manifests[] is an index, else a manifest', async (t) => {
  t.equal(detectManifestMediaType(undefined, Buffer.from('{"schemaVersion":2,"manifests":[]}')), OCI_INDEX);
  t.equal(detectManifestMediaType(undefined, Buffer.from('{"schemaVersion":2,"config":{},"layers":[]}')), OCI_MANIFEST);
});

t.test('schema1 documents are recognised, signed or not', async (t) => {
  t.equal(detectManifestMediaType('application/json', Buffer.from('{"schemaVersion":1,"signatures":[]}')), DOCKER_MANIFEST_V1_SIGNED);
  t.equal(detectManifestMediaType('application/json', Buffer.from('{"schemaVersion":1}')), DOCKER_MANIFEST_V1);
});

t.test('bytes that are not JSON fall back to the header, or to the OCI manifest type', async (t) => {
  t.equal(detectManifestMediaType('application/json', Buffer.from('not json')), 'application/json');
  t.equal(detectManifestMediaType(undefined, Buffer.from('not json')), OCI_MANIFEST);
});
