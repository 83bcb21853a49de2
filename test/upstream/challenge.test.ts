import t from 'tap';
import { parseChallenge } from '../../src/upstream/challenge.js';

t.test("Docker Hub's Bearer challenge yields realm, service and scope", async (t) => {
  const c = parseChallenge(
    'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"',
  );
  t.same(c, {
    scheme: 'bearer',
    params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/nginx:pull' },
  });
});

t.test('the scheme name is case-insensitive', async (t) => {
  t.equal(parseChallenge('bearer realm="x"')?.scheme, 'bearer');
  t.equal(parseChallenge('BEARER realm="x"')?.scheme, 'bearer');
  t.equal(parseChallenge('basic realm="x"')?.scheme, 'basic');
});

t.test('a Basic challenge is recognised', async (t) => {
  t.same(parseChallenge('Basic realm="Registry Realm"'), { scheme: 'basic', params: { realm: 'Registry Realm' } });
});

t.test('a bare Basic challenge without parameters is recognised', async (t) => {
  t.same(parseChallenge('Basic'), { scheme: 'basic', params: {} });
});

t.test('parameter names are lowercased', async (t) => {
  t.equal(parseChallenge('Bearer Realm="https://a/token",SERVICE="s"')?.params['realm'], 'https://a/token');
  t.equal(parseChallenge('Bearer Realm="https://a/token",SERVICE="s"')?.params['service'], 's');
});

t.test('spaces around separators and equals signs are tolerated', async (t) => {
  const c = parseChallenge('Bearer realm = "https://a/token" ,  service="s",scope="repository:x:pull"');
  t.equal(c?.params['realm'], 'https://a/token');
  t.equal(c?.params['service'], 's');
  t.equal(c?.params['scope'], 'repository:x:pull');
});

t.test('unquoted token values are accepted', async (t) => {
  t.same(parseChallenge('Bearer realm=https://a/token,service=reg')?.params, { realm: 'https://a/token', service: 'reg' });
});

t.test('quoted values keep commas and unescape backslashes', async (t) => {
  const c = parseChallenge('Bearer realm="https://a/token",scope="repository:a:pull,push",error="say \\"hi\\""');
  t.equal(c?.params['scope'], 'repository:a:pull,push');
  t.equal(c?.params['error'], 'say "hi"');
});

t.test('error parameters of an invalid_token challenge are kept', async (t) => {
  t.equal(parseChallenge('Bearer realm="r",error="invalid_token"')?.params['error'], 'invalid_token');
});

t.test('other schemes are reported as other', async (t) => {
  t.equal(parseChallenge('Negotiate abc')?.scheme, 'other');
});

t.test('an absent or empty header is no challenge', async (t) => {
  t.equal(parseChallenge(undefined), undefined);
  t.equal(parseChallenge(''), undefined);
  t.equal(parseChallenge('   '), undefined);
});
