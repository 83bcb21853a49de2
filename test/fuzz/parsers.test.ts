/**
 * Property tests of everything that parses client (or upstream) input: the /v2 path splitter, the
 * namespace resolver, the name / tag / digest validators, the Range parser, the WWW-Authenticate parser
 * and durations. For generated hostile inputs: no exception other than OciError escapes, every accepted
 * value satisfies the grammar, and nothing takes long (no regex backtracking blow-up).
 */
import fc from 'fast-check';
import { isIP } from 'node:net';
import t from 'tap';
import { parseDuration } from '../../src/config/duration.js';
import { defaultUpstreamSettings, loadMirrorConfig } from '../../src/config/upstreams.js';
import { isValidNamespace } from '../../src/oci/namespace.js';
import type { MirrorConfig, UpstreamConfig } from '../../src/config/types.js';
import { parseRange } from '../../src/http/range.js';
import { parseV2Path } from '../../src/http/v2-path.js';
import { parseDigest, tryParseDigest } from '../../src/oci/digest.js';
import { OciError } from '../../src/oci/errors.js';
import { isValidRepositoryName, isValidTag, parseReference } from '../../src/oci/names.js';
import { Resolver } from '../../src/resolve/resolver.js';
import { parseChallenge } from '../../src/upstream/challenge.js';
import { isLocalHostName, isPublicAddress } from '../../src/upstream/address-policy.js';

// The grammars, written out independently of the code under test (OCI distribution spec).
const SPEC_NAME = /^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$/;
const SPEC_TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
const SPEC_DIGEST = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;

const RUNS = { numRuns: 2000, seed: 20240601 };
/** Any single call on inputs of these sizes must be far below this (a backtracking regex is not). */
const SLOW_MS = 50;

const hex = (n: number) => fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: n, maxLength: n });
const digestLike = fc.oneof(
  hex(64).map((h) => `sha256:${h}`),
  hex(128).map((h) => `sha512:${h}`),
  hex(63).map((h) => `sha256:${h}`),
  hex(64).map((h) => `sha256:${h.toUpperCase()}`),
  hex(64).map((h) => `sha384:${h}`),
  hex(64).map((h) => `SHA256:${h}`),
  fc.constant('sha256:'),
  fc.string({ maxLength: 80 }).map((s) => `sha256:${s}`),
);

/** Path-ish pieces an attacker would try, mixed with legitimate ones. */
const hostileSegment = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('library', 'x', 'app', 'nginx', 'a', 'foo-bar', 'foo.bar', 'foo__bar', 'f_o', 'v2') },
  {
    weight: 4,
    arbitrary: fc.constantFrom(
      '..',
      '.',
      '',
      '%2e%2e',
      '%2E%2E',
      '%2e',
      '%2F',
      '%2f',
      '%00',
      '%',
      '%zz',
      '%5c',
      '\\',
      '\0',
      '..%2f..',
      '...',
      '~',
      ';',
      'manifests',
      'blobs',
      'tags',
      'list',
      'referrers',
      '_tags',
      '_uploads',
      'UPPER',
      '-x',
      'x-',
      'x--y',
      '_x',
      '__',
      'x___y',
      'é',
      '日本',
      '\u202e',
      '\ud800',
      '\uffff',
      ' ',
      '\t',
      '\n',
      '?',
      '#',
      '&',
      '=',
      '"',
      "'",
      '<script>',
      '$(id)',
      'docker.io',
      'index.docker.io',
      'ghcr.io',
      'localhost',
      'localhost:5000',
      '127.0.0.1',
      '127.0.0.1:5000',
      '[::1]',
      '[::1]:5000',
      '169.254.169.254',
      '10.0.0.1:80',
      '0x7f000001',
      'a.b.c.d.e',
      'x.local',
      'fixture.test',
    ),
  },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 12 }) },
  { weight: 1, arbitrary: fc.integer({ min: 200, max: 3000 }).map((n) => 'a'.repeat(n)) },
  { weight: 1, arbitrary: digestLike },
);
const hostilePath = fc
  .tuple(fc.constantFrom('/v2/', '/v2', '/', '', '//v2/', '/v2//', '/V2/', '/v2/../'), fc.array(hostileSegment, { maxLength: 8 }))
  .map(([prefix, segs]) => prefix + segs.join('/'));

function timed<T>(f: () => T): { value: T | undefined; error: unknown; ms: number } {
  const started = performance.now();
  try {
    const value = f();
    return { value, error: undefined, ms: performance.now() - started };
  } catch (error) {
    return { value: undefined, error, ms: performance.now() - started };
  }
}

t.test('parseV2Path: only OciError escapes, and a parsed path reassembles to the input with clean parts', async (t) => {
  fc.assert(
    fc.property(
      fc.oneof(
        hostilePath,
        fc.string({ unit: 'binary', maxLength: 300 }).map((s) => `/v2/${s}`),
      ),
      (raw) => {
        const r = timed(() => parseV2Path(raw));
        if (r.ms > SLOW_MS) throw new Error(`parseV2Path took ${r.ms} ms`);
        if (r.error !== undefined) {
          if (!(r.error instanceof OciError)) throw r.error;
          return;
        }
        const p = r.value;
        if (p === undefined || p.kind === 'base') return;
        const parts = p.kind === 'tags' ? [p.name] : p.kind === 'manifests' ? [p.name, p.reference] : [p.name, p.digest];
        for (const part of parts) {
          if (/[%\\\0]/.test(part)) throw new Error(`unclean part ${JSON.stringify(part)} from ${JSON.stringify(raw)}`);
        }
        const rebuilt =
          p.kind === 'tags' ? `/v2/${p.name}/tags/list` : `/v2/${p.name}/${p.kind}/${p.kind === 'manifests' ? p.reference : p.digest}`;
        if (rebuilt !== raw) throw new Error(`${JSON.stringify(raw)} parsed as ${JSON.stringify(p)}`);
      },
    ),
    RUNS,
  );
  t.pass('no unexpected exception, every parse reassembles to its input');
});

function explicitUpstream(namespace: string, host: string): UpstreamConfig {
  return { ...defaultUpstreamSettings(), namespace, host, tls: false, explicit: true };
}

function configs(): { label: string; config: MirrorConfig }[] {
  const open = loadMirrorConfig({});
  const withFile: MirrorConfig = {
    ...open,
    allowUnlisted: false,
    upstreams: new Map([
      ['docker.io', explicitUpstream('docker.io', 'registry-1.docker.io')],
      ['127.0.0.1:5000', explicitUpstream('127.0.0.1:5000', '127.0.0.1:5000')],
    ]),
  };
  const openPlusLocal: MirrorConfig = {
    ...open,
    upstreams: new Map([['registry.local:5000', explicitUpstream('registry.local:5000', '10.1.2.3:5000')]]),
  };
  return [
    { label: 'open mirroring', config: open },
    { label: 'config file', config: withFile },
    { label: 'open mirroring plus a private explicit upstream', config: openPlusLocal },
  ];
}

const hostileNamespace = fc.oneof(
  fc.constantFrom(
    'docker.io',
    'DOCKER.IO',
    ' docker.io ',
    'index.docker.io',
    'registry-1.docker.io',
    'ghcr.io',
    'quay.io:443',
    'registry.local:5000',
    '127.0.0.1',
    '127.0.0.1:5000',
    '127.1',
    '2130706433',
    '0x7f000001',
    'localhost',
    'LOCALHOST:80',
    'a.localhost',
    'localhost.',
    '[::1]',
    '[::1]:5000',
    '[::ffff:127.0.0.1]',
    '[fe80::1%25eth0]',
    '[fc00::1]:80',
    '169.254.169.254',
    '10.0.0.1:80',
    '192.168.1.1',
    '100.64.0.1',
    '0.0.0.0',
    '8.8.8.8',
    '[2001:db8::1]',
    'user@host',
    'host/path',
    'http://evil.com',
    'evil.com#',
    'evil.com:99999',
    'evil.com:-1',
    '',
    ' ',
    '.',
    '..',
    'a..b',
    '-a.com',
    'a-.com',
    'é.com',
    'xn--nxasmq6b.com',
  ),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.integer({ min: 250, max: 2000 }).map((n) => `${'a'.repeat(n)}.com`),
);

t.test('Resolver: only OciError escapes; a resolved repository is valid and never an implicit dial to a non-public address', async (t) => {
  for (const { label, config } of configs()) {
    const resolver = new Resolver(config);
    fc.assert(
      fc.property(
        fc.array(hostileSegment, { minLength: 1, maxLength: 6 }).map((s) => s.join('/')),
        fc.option(hostileNamespace, { nil: undefined }),
        fc.option(hostileNamespace, { nil: undefined }),
        (name, ns, registryHeader) => {
          const r = timed(() => resolver.resolve({ name, ns, registryHeader }));
          if (r.ms > SLOW_MS) throw new Error(`resolve took ${r.ms} ms`);
          if (r.error !== undefined) {
            if (!(r.error instanceof OciError)) throw r.error;
            if (!['NAME_INVALID', 'NAME_UNKNOWN', 'DENIED'].includes(r.error.code)) throw new Error(`unexpected code ${r.error.code}`);
            return;
          }
          const repo = r.value;
          if (!repo) throw new Error('no result and no error');
          if (!SPEC_NAME.test(repo.repository) || repo.repository.length > 255 + 'library/'.length) {
            throw new Error(`invalid repository ${JSON.stringify(repo.repository)}`);
          }
          if (!isValidNamespace(repo.namespace) || repo.namespace !== repo.namespace.toLowerCase()) {
            throw new Error(`invalid namespace ${JSON.stringify(repo.namespace)}`);
          }
          if (repo.upstream.namespace !== repo.namespace) throw new Error('upstream does not match the namespace');
          if (!config.allowUnlisted && !repo.upstream.explicit)
            throw new Error(`unlisted namespace ${repo.namespace} resolved with a config file`);
          if (!repo.upstream.explicit) {
            const host = repo.upstream.host.startsWith('[')
              ? repo.upstream.host.slice(1, repo.upstream.host.indexOf(']'))
              : repo.upstream.host.replace(/:\d+$/, '');
            if (isLocalHostName(host) || (isIP(host) !== 0 && !isPublicAddress(host))) {
              throw new Error(`implicit upstream to a non-public address: ${repo.upstream.host}`);
            }
          }
        },
      ),
      { ...RUNS, numRuns: 1500 },
    );
    t.pass(`${label}: properties hold`);
  }
});

t.test('names: isValidRepositoryName agrees with the spec grammar (and the 255 limit) on generated names', async (t) => {
  const specValid = fc.stringMatching(SPEC_NAME).filter((s) => s.length > 0);
  fc.assert(
    fc.property(
      fc.oneof(
        specValid,
        fc.array(hostileSegment, { maxLength: 5 }).map((s) => s.join('/')),
        fc.string({ unit: 'binary' }),
      ),
      (name) => {
        const r = timed(() => isValidRepositoryName(name));
        if (r.error !== undefined) throw r.error;
        if (r.ms > SLOW_MS) throw new Error(`took ${r.ms} ms`);
        const expected = name.length > 0 && name.length <= 255 && SPEC_NAME.test(name);
        if (r.value !== expected) throw new Error(`${JSON.stringify(name)}: got ${String(r.value)}, spec says ${String(expected)}`);
      },
    ),
    RUNS,
  );
  t.pass('agrees with the spec grammar');
});

t.test('parseReference: a tag satisfies the tag grammar, a digest the digest grammar; anything else is an OciError', async (t) => {
  const specTag = fc.stringMatching(SPEC_TAG);
  fc.assert(
    fc.property(fc.oneof(specTag, digestLike, hostileSegment, fc.string({ unit: 'binary', maxLength: 200 })), (input) => {
      const r = timed(() => parseReference(input));
      if (r.ms > SLOW_MS) throw new Error(`took ${r.ms} ms`);
      if (r.error !== undefined) {
        if (!(r.error instanceof OciError)) throw r.error;
        if (SPEC_TAG.test(input) || SPEC_DIGEST.test(input)) throw new Error(`valid reference ${JSON.stringify(input)} refused`);
        return;
      }
      const ref = r.value;
      if (ref?.kind === 'tag' && (!SPEC_TAG.test(ref.tag) || ref.tag !== input)) throw new Error(`bad tag ${JSON.stringify(ref.tag)}`);
      if (ref?.kind === 'digest' && (!SPEC_DIGEST.test(ref.digest.value) || ref.digest.value !== input))
        throw new Error(`bad digest ${JSON.stringify(ref.digest.value)}`);
      if (isValidTag(input) !== SPEC_TAG.test(input)) throw new Error(`isValidTag disagrees on ${JSON.stringify(input)}`);
    }),
    RUNS,
  );
  t.pass('references satisfy their grammars');
});

t.test(
  'digests: tryParseDigest accepts exactly sha256/sha512 lowercase hex of the right length; parseDigest throws only OciError',
  async (t) => {
    fc.assert(
      fc.property(fc.oneof(digestLike, fc.string({ unit: 'binary', maxLength: 200 })), (input) => {
        const d = tryParseDigest(input);
        if ((d !== undefined) !== SPEC_DIGEST.test(input))
          throw new Error(`tryParseDigest(${JSON.stringify(input)}) = ${JSON.stringify(d)}`);
        if (d && (d.value !== input || `${d.algorithm}:${d.hex}` !== input)) throw new Error('digest parts do not reassemble');
        try {
          parseDigest(input);
        } catch (e) {
          if (!(e instanceof OciError) || e.code !== 'DIGEST_INVALID') throw e;
        }
      }),
      RUNS,
    );
    t.pass('digest grammar holds');
  },
);

/** RFC 9110 single byte-range semantics, computed exactly with BigInt. */
function rangeOracle(
  header: string,
  size: number,
): { kind: 'full' } | { kind: 'unsatisfiable' } | { kind: 'partial'; start: number; end: number } {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header);
  if (!m) return { kind: 'full' };
  const [, a = '', b = ''] = m;
  const total = BigInt(size);
  if (a === '' && b === '') return { kind: 'full' };
  if (a === '') {
    const n = BigInt(b);
    if (n === 0n || total === 0n) return { kind: 'unsatisfiable' };
    const start = total > n ? total - n : 0n;
    return { kind: 'partial', start: Number(start), end: size - 1 };
  }
  const start = BigInt(a);
  if (b !== '' && BigInt(b) < start) return { kind: 'full' };
  if (start >= total) return { kind: 'unsatisfiable' };
  const end = b === '' || BigInt(b) >= total ? total - 1n : BigInt(b);
  return { kind: 'partial', start: Number(start), end: Number(end) };
}

t.test('parseRange: never throws, a partial range lies inside the body, and strict single ranges follow RFC 9110', async (t) => {
  const digits = fc.oneof(
    fc.constant(''),
    fc.nat({ max: 2000 }).map(String),
    fc.bigInt({ min: 0n, max: 2n ** 80n }).map(String),
    fc.integer({ min: 1, max: 400 }).map((n) => '9'.repeat(n)),
    fc.nat({ max: 100 }).map((n) => `000${n}`),
  );
  const size = fc.oneof(fc.nat({ max: 4096 }), fc.constant(0), fc.constant(1), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }));
  const strict = fc.tuple(digits, digits).map(([a, b]) => `bytes=${a}-${b}`);
  const loose = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 60 }),
    fc.tuple(digits, digits).map(([a, b]) => `bytes = ${a} - ${b}`),
    fc.tuple(digits, digits, digits).map(([a, b, c]) => `bytes=${a}-${b},${c}-`),
    fc.tuple(digits, digits).map(([a, b]) => `BYTES=${a}-${b}`),
    fc.tuple(digits, digits).map(([a, b]) => `items=${a}-${b}`),
    fc.tuple(digits, digits).map(([a, b]) => `bytes=-${a}-${b}`),
    fc.constantFrom('bytes=', 'bytes=-', 'bytes=--', 'bytes=1-2-3', 'bytes=0x10-0x20', 'bytes=1e3-', 'bytes=+1-2', 'bytes=\u0661-\u0662'),
  );
  fc.assert(
    fc.property(fc.oneof(strict, loose), size, (header, total) => {
      const r = timed(() => parseRange(header, total));
      if (r.error !== undefined) throw r.error;
      if (r.ms > SLOW_MS) throw new Error(`took ${r.ms} ms`);
      const got = r.value;
      if (!got) throw new Error('no result');
      if (got.kind === 'partial') {
        const { start, end } = got.range;
        if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start || end > total - 1) {
          throw new Error(`${JSON.stringify(header)} on ${total} bytes gave range ${start}-${end}`);
        }
      }
      if (/^bytes=\d*-\d*$/.test(header)) {
        const want = rangeOracle(header, total);
        const same =
          want.kind === got.kind &&
          (want.kind !== 'partial' || (got.kind === 'partial' && got.range.start === want.start && got.range.end === want.end));
        if (!same)
          throw new Error(`${JSON.stringify(header)} on ${total} bytes: got ${JSON.stringify(got)}, RFC 9110 says ${JSON.stringify(want)}`);
      }
    }),
    { ...RUNS, numRuns: 5000 },
  );
  t.pass('ranges are in bounds and follow RFC 9110');
});

t.test('parseRange ignores a range whose last position is below its first, also past 2^53 (no precision loss)', async (t) => {
  // RFC 9110 14.1.1: last-pos < first-pos makes the range-spec invalid; a Range header without a valid
  // range is ignored (200, whole body), not 416.
  t.same(parseRange('bytes=10-9', 100), { kind: 'full' }, 'small numbers');
  t.same(parseRange('bytes=9007199254740993-9007199254740992', 100), { kind: 'full' }, 'just above 2^53');
  t.same(parseRange(`bytes=${'9'.repeat(400)}-${'9'.repeat(399)}`, 100), { kind: 'full' }, '400-digit numbers');
});

t.test('parseChallenge (hostile upstream WWW-Authenticate): never throws, never slow', async (t) => {
  const param = fc.tuple(
    fc.constantFrom('realm', 'service', 'scope', 'error', 'REALM', 'x', ''),
    fc.oneof(
      fc.string({ maxLength: 40 }),
      fc.string({ maxLength: 40 }).map((s) => `"${s}"`),
      fc.constant('"unterminated'),
    ),
  );
  fc.assert(
    fc.property(
      fc.oneof(
        fc.string({ unit: 'binary', maxLength: 300 }),
        fc
          .tuple(fc.constantFrom('Bearer', 'Basic', 'bearer', 'Digest', ''), fc.array(param, { maxLength: 8 }))
          .map(([scheme, ps]) => `${scheme} ${ps.map(([k, v]) => `${k}=${v}`).join(',')}`),
      ),
      (header) => {
        const r = timed(() => parseChallenge(header));
        if (r.error !== undefined) throw r.error;
        if (r.ms > SLOW_MS) throw new Error(`took ${r.ms} ms`);
      },
    ),
    RUNS,
  );
  t.pass('no exception');
});

t.test('parseDuration: never throws; a result is a non-negative number of milliseconds', async (t) => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.string({ unit: 'binary', maxLength: 40 }),
        fc
          .tuple(fc.bigInt({ min: 0n, max: 10n ** 400n }), fc.constantFrom('ms', 's', 'm', 'h', 'd', 'w', 'y', ''))
          .map(([n, u]) => `${n}${u}`),
      ),
      (text) => {
        const r = timed(() => parseDuration(text));
        if (r.error !== undefined) throw r.error;
        if (r.ms > SLOW_MS) throw new Error(`took ${r.ms} ms`);
        if (r.value !== undefined && !(r.value >= 0)) throw new Error(`${JSON.stringify(text)} -> ${r.value}`);
      },
    ),
    RUNS,
  );
  t.pass('durations are numbers or refused');
});

t.test('validators stay fast on long adversarial inputs (no catastrophic backtracking)', async (t) => {
  const long = [
    'a'.repeat(20_000) + '!',
    'a-'.repeat(10_000) + '!',
    'a.'.repeat(10_000) + '-',
    'a__'.repeat(7000) + '_',
    `${'a/'.repeat(8000)}A`,
    `sha256:${'a'.repeat(20_000)}`,
    `${'a-'.repeat(10_000)}:x`,
    `${'a.'.repeat(5000)}a-:5000`,
    `Bearer ${'a="\\'.repeat(5000)}`,
    `bytes=${'1'.repeat(20_000)}-${'2'.repeat(20_000)}`,
  ];
  for (const s of long) {
    const calls: [string, () => unknown][] = [
      ['isValidRepositoryName', () => isValidRepositoryName(s)],
      ['isValidTag', () => isValidTag(s)],
      ['tryParseDigest', () => tryParseDigest(s)],
      ['isValidNamespace', () => isValidNamespace(s)],
      ['parseReference', () => parseReference(s)],
      ['parseV2Path', () => parseV2Path(`/v2/${s}/manifests/latest`)],
      ['parseRange', () => parseRange(s, 1000)],
      ['parseChallenge', () => parseChallenge(s)],
      ['parseDuration', () => parseDuration(s)],
    ];
    for (const [name, f] of calls) {
      const r = timed(f);
      if (r.error !== undefined && !(r.error instanceof OciError)) t.fail(`${name} threw ${String(r.error)}`);
      t.ok(r.ms < 200, `${name} on ${s.slice(0, 12)}... (${s.length} chars): ${r.ms.toFixed(1)} ms`);
    }
  }
});
