import t from 'tap';
import { isValidRepositoryName, isValidTag, MAX_NAME_LENGTH, parseReference, referenceString } from '../../src/oci/names.js';

const HEX64 = 'c'.repeat(64);

t.test('repository names follow the distribution grammar', async (t) => {
  for (const good of [
    'nginx',
    'library/nginx',
    'org/team/app',
    'a/b/c/d/e/f',
    'my-app',
    'my--app',
    'my_app',
    'my__app',
    'my.app',
    'a0/b1',
    '0',
  ]) {
    t.ok(isValidRepositoryName(good), good);
  }
});

t.test('names with uppercase, leading or trailing separators, empty components or odd characters are refused', async (t) => {
  for (const bad of [
    '',
    'Nginx',
    'library/Nginx',
    '-nginx',
    'nginx-',
    '.nginx',
    'nginx.',
    '_nginx',
    'my___app',
    'my._app',
    'library//nginx',
    '/nginx',
    'nginx/',
    'nginx:latest',
    'ngi nx',
    'library/../etc',
    '..',
    'a%2fb',
  ]) {
    t.notOk(isValidRepositoryName(bad), JSON.stringify(bad));
  }
});

t.test('names are limited to 255 characters', async (t) => {
  t.equal(MAX_NAME_LENGTH, 255);
  const ok = `${'a'.repeat(127)}/${'b'.repeat(127)}`;
  t.equal(ok.length, 255);
  t.ok(isValidRepositoryName(ok));
  t.notOk(isValidRepositoryName(`${ok}c`));
});

t.test('tags are [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}, case-sensitive', async (t) => {
  for (const good of ['latest', 'Latest', 'v1.2.3', '_private', '1', 'a-b_c.d', 'x'.repeat(128)]) {
    t.ok(isValidTag(good), good);
  }
  for (const bad of ['', '.hidden', '-dash', 'x'.repeat(129), 'a/b', 'a:b', 'a b', 'tag\n']) {
    t.notOk(isValidTag(bad), JSON.stringify(bad));
  }
});

t.test('a tag reference parses as a tag', async (t) => {
  t.same(parseReference('v1.0'), { kind: 'tag', tag: 'v1.0' });
});

t.test('a digest reference parses as a digest', async (t) => {
  const ref = parseReference(`sha256:${HEX64}`);
  t.equal(ref.kind, 'digest');
  t.equal(ref.kind === 'digest' ? ref.digest.value : '', `sha256:${HEX64}`);
  t.equal(referenceString(ref), `sha256:${HEX64}`);
  t.equal(referenceString(parseReference('latest')), 'latest');
});

t.test('a malformed digest reference is DIGEST_INVALID', async (t) => {
  t.throws(() => parseReference('sha256:totallywrong'), { code: 'DIGEST_INVALID' });
  t.throws(() => parseReference(`sha256:${'C'.repeat(64)}`), { code: 'DIGEST_INVALID' });
});

t.test('a reference that is neither a tag nor a digest is MANIFEST_UNKNOWN (404), as the conformance suite expects', async (t) => {
  t.throws(() => parseReference('.INVALID_MANIFEST_NAME'), { code: 'MANIFEST_UNKNOWN' });
  t.throws(() => parseReference('x'.repeat(129)), { code: 'MANIFEST_UNKNOWN' });
  t.throws(() => parseReference(''), { code: 'MANIFEST_UNKNOWN' });
});
