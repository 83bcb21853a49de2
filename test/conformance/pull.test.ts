/**
 * The pull cases of the OCI distribution-spec conformance suite (conformance/01_pull_test.go), ported to
 * run against the mirror in front of a fixture upstream pre-seeded the way the suite's Setup pushes its
 * content: two config blobs, one layer, manifests[0] under the tag "tagtest0" and manifests[1] by digest
 * only. Each case runs twice: on a cold cache (a fresh mirror per case) and on a warm cache (one mirror
 * that has already pulled everything; successful cases must then not touch the upstream).
 *
 * Added beyond the suite: the same checks for an OCI image index requested with the index Accept type.
 */
import t, { type Test } from 'tap';
import { gzipSync } from 'node:zlib';
import { randomBytesSeeded, sha256 } from '../fixtures/content.js';
import { startFixtureUpstream, type FixtureUpstream } from '../fixtures/upstream.js';
import { startMirror, type TestMirror } from '../helpers/mirror.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const NAME = 'oci-conformance/distribution-test';
const TAG = 'tagtest0';
const INDEX_TAG = 'tagtest0-index';
const NONEXISTENT_MANIFEST = '.INVALID_MANIFEST_NAME';
/** The error codes the suite accepts in a 400 body. */
const ERROR_CODES = [
  'BLOB_UNKNOWN',
  'BLOB_UPLOAD_INVALID',
  'BLOB_UPLOAD_UNKNOWN',
  'DIGEST_INVALID',
  'MANIFEST_BLOB_UNKNOWN',
  'MANIFEST_INVALID',
  'MANIFEST_UNKNOWN',
  'MANIFEST_UNVERIFIED',
  'NAME_INVALID',
  'NAME_UNKNOWN',
  'SIZE_INVALID',
  'TAG_INVALID',
  'UNAUTHORIZED',
  'DENIED',
  'UNSUPPORTED',
];

interface TestBlob {
  content: Buffer;
  digest: string;
}

interface Content {
  configs: TestBlob[];
  layer: TestBlob;
  manifests: TestBlob[];
  index: TestBlob;
  dummyDigest: string;
}

/** Pushes (into the fixture) what the suite's Setup pushes. */
function seed(up: FixtureUpstream): Content {
  const configs = [0, 1].map((i) => {
    const author = randomBytesSeeded(8, 100 + i).toString('hex');
    const content = Buffer.from(
      JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, author }, null, '\t'),
    );
    return { content, digest: up.addBlob(content) };
  });
  const layerContent = gzipSync(Buffer.from('you bothered to find out what was in here. Congratulations!\n'));
  const layer = { content: layerContent, digest: up.addBlob(layerContent) };
  const manifests = configs.map((config, i) => {
    const content = Buffer.from(
      JSON.stringify(
        {
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config.digest, size: config.content.length },
          layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layer.digest, size: layer.content.length }],
        },
        null,
        '\t',
      ),
    );
    return { content, digest: up.addManifest(NAME, content, OCI_MANIFEST, i === 0 ? TAG : undefined) };
  });
  const indexContent = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: manifests.map((m, i) => ({
        mediaType: OCI_MANIFEST,
        digest: m.digest,
        size: m.content.length,
        platform: { architecture: i === 0 ? 'amd64' : 'arm64', os: 'linux' },
      })),
    }),
  );
  const index = { content: indexContent, digest: up.addManifest(NAME, indexContent, OCI_INDEX, INDEX_TAG) };
  return { configs, layer, manifests, index, dummyDigest: sha256('dummy: not in any registry') };
}

interface Ctx {
  c: Content;
  request(method: 'GET' | 'HEAD', path: string, accept?: string): Promise<{ res: Response; body: Buffer }>;
}

interface Case {
  group: string;
  name: string;
  /** A successful case: on a warm cache it must be answered without the upstream. */
  hit: boolean;
  run(t: Test, ctx: Ctx): Promise<void>;
}

function path(p: string, args: { digest?: string; reference?: string } = {}): string {
  return `/v2/${NAME}/${p}`.replace('<digest>', args.digest ?? '').replace('<reference>', args.reference ?? '');
}

const cases: Case[] = [
  {
    group: 'Setup',
    name: 'Get the name of a tag',
    hit: false,
    async run(t, { request }) {
      const { res, body } = await request('GET', path('tags/list'));
      t.equal(res.status, 200);
      const doc = JSON.parse(body.toString()) as { name: string; tags: string[] };
      t.equal(doc.name, NAME);
      t.ok(doc.tags.includes(TAG));
    },
  },
  {
    group: 'Pull blobs',
    name: 'HEAD request to nonexistent blob should result in 404 response',
    hit: false,
    async run(t, { c, request }) {
      const { res } = await request('HEAD', path('blobs/<digest>', { digest: c.dummyDigest }));
      t.equal(res.status, 404);
    },
  },
  {
    group: 'Pull blobs',
    name: 'HEAD request to existing blob should yield 200',
    hit: true,
    async run(t, { c, request }) {
      const { res } = await request('HEAD', path('blobs/<digest>', { digest: c.configs[0]!.digest }));
      t.equal(res.status, 200);
      const h = res.headers.get('docker-content-digest');
      if (h) t.equal(h, c.configs[0]!.digest);
    },
  },
  {
    group: 'Pull blobs',
    name: 'GET nonexistent blob should result in 404 response',
    hit: false,
    async run(t, { c, request }) {
      const { res } = await request('GET', path('blobs/<digest>', { digest: c.dummyDigest }));
      t.equal(res.status, 404);
    },
  },
  {
    group: 'Pull blobs',
    name: 'GET request to existing blob URL should yield 200',
    hit: true,
    async run(t, { c, request }) {
      const { res, body } = await request('GET', path('blobs/<digest>', { digest: c.configs[0]!.digest }));
      t.equal(res.status, 200);
      t.same(body, c.configs[0]!.content);
    },
  },
  {
    group: 'Pull blobs',
    name: 'GET request to existing layer blob URL should yield 200',
    hit: true,
    async run(t, { c, request }) {
      const { res, body } = await request('GET', path('blobs/<digest>', { digest: c.layer.digest }));
      t.equal(res.status, 200);
      t.same(body, c.layer.content);
    },
  },
  {
    group: 'Pull manifests',
    name: 'HEAD request to nonexistent manifest should return 404',
    hit: false,
    async run(t, { request }) {
      const { res } = await request('HEAD', path('manifests/<reference>', { reference: NONEXISTENT_MANIFEST }));
      t.equal(res.status, 404);
    },
  },
  ...[0, 1].map((i): Case => ({
    group: 'Pull manifests',
    name: `HEAD request to manifest[${i}] path (digest) should yield 200 response`,
    hit: true,
    async run(t, { c, request }) {
      const { res, body } = await request('HEAD', path('manifests/<digest>', { digest: c.manifests[i]!.digest }), OCI_MANIFEST);
      t.equal(res.status, 200);
      const h = res.headers.get('docker-content-digest');
      if (h) t.equal(h, c.manifests[i]!.digest);
      t.equal(body.length, 0);
    },
  })),
  {
    group: 'Pull manifests',
    name: 'HEAD request to manifest path (tag) should yield 200 response',
    hit: true,
    async run(t, { c, request }) {
      const { res } = await request('HEAD', path('manifests/<reference>', { reference: TAG }), OCI_MANIFEST);
      t.equal(res.status, 200);
      const h = res.headers.get('docker-content-digest');
      if (h) t.equal(h, c.manifests[0]!.digest);
    },
  },
  {
    group: 'Pull manifests',
    name: 'GET nonexistent manifest should return 404',
    hit: false,
    async run(t, { request }) {
      const { res } = await request('GET', path('manifests/<reference>', { reference: NONEXISTENT_MANIFEST }));
      t.equal(res.status, 404);
    },
  },
  ...[0, 1].map((i): Case => ({
    group: 'Pull manifests',
    name: `GET request to manifest[${i}] path (digest) should yield 200 response`,
    hit: true,
    async run(t, { c, request }) {
      const { res, body } = await request('GET', path('manifests/<digest>', { digest: c.manifests[i]!.digest }), OCI_MANIFEST);
      t.equal(res.status, 200);
      t.same(body, c.manifests[i]!.content);
    },
  })),
  {
    group: 'Pull manifests',
    name: 'GET request to manifest path (tag) should yield 200 response',
    hit: true,
    async run(t, { c, request }) {
      const { res, body } = await request('GET', path('manifests/<reference>', { reference: TAG }), OCI_MANIFEST);
      t.equal(res.status, 200);
      t.same(body, c.manifests[0]!.content);
    },
  },
  {
    group: 'Pull manifests (OCI index)',
    name: 'HEAD request to index path (tag) should yield 200 response',
    hit: true,
    async run(t, { c, request }) {
      const { res } = await request('HEAD', path('manifests/<reference>', { reference: INDEX_TAG }), OCI_INDEX);
      t.equal(res.status, 200);
      t.equal(res.headers.get('docker-content-digest'), c.index.digest);
      t.equal(res.headers.get('content-type'), OCI_INDEX);
    },
  },
  {
    group: 'Pull manifests (OCI index)',
    name: 'GET request to index path (digest) should yield 200 response',
    hit: true,
    async run(t, { c, request }) {
      const { res, body } = await request('GET', path('manifests/<digest>', { digest: c.index.digest }), OCI_INDEX);
      t.equal(res.status, 200);
      t.same(body, c.index.content);
    },
  },
  {
    group: 'Pull manifests (OCI index)',
    name: 'GET request to index path (tag) with the manifest and index Accept types should yield 200 response',
    hit: true,
    async run(t, { c, request }) {
      const { res, body } = await request('GET', path('manifests/<reference>', { reference: INDEX_TAG }), `${OCI_MANIFEST}, ${OCI_INDEX}`);
      t.equal(res.status, 200);
      t.equal(res.headers.get('content-type'), OCI_INDEX);
      t.same(body, c.index.content);
    },
  },
  {
    group: 'Error codes',
    name: '400 response body should contain OCI-conforming JSON message',
    hit: false,
    async run(t, { request }) {
      const { res, body } = await request('GET', path('manifests/<reference>', { reference: 'sha256:totallywrong' }), OCI_MANIFEST);
      t.ok(res.status === 400 || res.status === 404, `400 or 404 (got ${res.status})`);
      t.match(res.headers.get('content-type'), /^application\/json/);
      const doc = JSON.parse(body.toString()) as { errors: { code: string; message: string }[] };
      t.ok(doc.errors.length > 0);
      if (res.status === 400) t.ok(ERROR_CODES.includes(doc.errors[0]!.code), doc.errors[0]!.code);
    },
  },
  {
    group: 'Error codes',
    name: 'a manifest request with an invalid repository name should return 404 with OCI-conforming JSON',
    hit: false,
    async run(t, { request }) {
      const { res, body } = await request('GET', `/v2/${NAME.toUpperCase()}/manifests/${TAG}`, OCI_MANIFEST);
      t.equal(res.status, 404);
      t.match(res.headers.get('content-type'), /^application\/json/);
      t.ok((JSON.parse(body.toString()) as { errors: unknown[] }).errors.length > 0);
    },
  },
];

function ctxFor(mirror: TestMirror, c: Content): Ctx {
  return {
    c,
    async request(method, p, accept) {
      const res = await fetch(`${mirror.url}${p}`, { method, headers: accept ? { accept } : {} });
      return { res, body: Buffer.from(await res.arrayBuffer()) };
    },
  };
}

async function fixture(t: Test): Promise<{ up: FixtureUpstream; c: Content }> {
  const up = await startFixtureUpstream();
  t.teardown(() => up.close());
  return { up, c: seed(up) };
}

async function mirrorFor(t: Test, up: FixtureUpstream): Promise<TestMirror> {
  const mirror = await startMirror({ upstreams: [{ namespace: 'conformance.test', host: up.host }], defaultNamespace: 'conformance.test' });
  t.teardown(() => mirror.close());
  return mirror;
}

function groups(): string[] {
  return [...new Set(cases.map((c) => c.group))];
}

t.test('cold cache', async (t) => {
  const { up, c } = await fixture(t);
  for (const group of groups()) {
    await t.test(group, async (t) => {
      for (const kase of cases.filter((k) => k.group === group)) {
        await t.test(`Pull: ${kase.name}`, async (t) => {
          const mirror = await mirrorFor(t, up);
          await kase.run(t, ctxFor(mirror, c));
        });
      }
    });
  }
});

t.test('warm cache', async (t) => {
  const { up, c } = await fixture(t);
  const mirror = await mirrorFor(t, up);
  const ctx = ctxFor(mirror, c);
  // Warm: pull everything the successful cases ask for.
  for (const d of [c.configs[0]!.digest, c.configs[1]!.digest, c.layer.digest]) {
    t.equal((await ctx.request('GET', path('blobs/<digest>', { digest: d }))).res.status, 200, `warm blob ${d.slice(0, 19)}`);
  }
  for (const [ref, accept] of [
    [TAG, OCI_MANIFEST],
    [c.manifests[0]!.digest, OCI_MANIFEST],
    [c.manifests[1]!.digest, OCI_MANIFEST],
    [INDEX_TAG, OCI_INDEX],
    [c.index.digest, OCI_INDEX],
  ] as const) {
    t.equal(
      (await ctx.request('GET', path('manifests/<reference>', { reference: ref }), accept)).res.status,
      200,
      `warm manifest ${ref.slice(0, 19)}`,
    );
  }
  for (const group of groups()) {
    await t.test(group, async (t) => {
      for (const kase of cases.filter((k) => k.group === group)) {
        await t.test(`Pull: ${kase.name}`, async (t) => {
          const before = up.requests.length;
          await kase.run(t, ctx);
          if (kase.hit) t.equal(up.requests.length, before, 'answered from the cache, without the upstream');
        });
      }
    });
  }
});
