import t from 'tap';
import { formatImageReference, parseImageList, parseImageReference } from '../../src/oci/image-reference.js';

const D = `sha256:${'a'.repeat(64)}`;

t.test('a single-segment name is a Docker Hub official image with the latest tag', async (t) => {
  t.same(parseImageReference('nginx'), { namespace: 'docker.io', repository: 'library/nginx', tag: 'latest', digest: undefined });
});

t.test('a two-segment name without a host is on Docker Hub, without library/', async (t) => {
  t.same(parseImageReference('bitnami/redis:7.2'), { namespace: 'docker.io', repository: 'bitnami/redis', tag: '7.2', digest: undefined });
});

t.test('a first segment with a dot, a port or localhost is the registry host', async (t) => {
  t.equal(formatImageReference(parseImageReference('ghcr.io/org/app:tag')), 'ghcr.io/org/app:tag');
  t.equal(formatImageReference(parseImageReference('127.0.0.1:5000/team/app:v1')), '127.0.0.1:5000/team/app:v1');
  t.equal(formatImageReference(parseImageReference('localhost/app')), 'localhost/app:latest');
  t.equal(formatImageReference(parseImageReference('registry.test/a/b/c/d:1')), 'registry.test/a/b/c/d:1');
});

t.test('Docker Hub host aliases are docker.io, and its single-segment names get library/', async (t) => {
  t.equal(formatImageReference(parseImageReference('index.docker.io/nginx:1.27')), 'docker.io/library/nginx:1.27');
  t.equal(formatImageReference(parseImageReference('docker.io/library/nginx:1.27')), 'docker.io/library/nginx:1.27');
});

t.test('a digest reference has no default tag; tag and digest together keep both', async (t) => {
  t.same(parseImageReference(`docker.io/library/nginx@${D}`), {
    namespace: 'docker.io',
    repository: 'library/nginx',
    tag: undefined,
    digest: D,
  });
  t.same(parseImageReference(`nginx:1.27@${D}`), { namespace: 'docker.io', repository: 'library/nginx', tag: '1.27', digest: D });
});

t.test('the port of a registry host is not taken for a tag', async (t) => {
  t.same(parseImageReference('127.0.0.1:5000/app'), { namespace: '127.0.0.1:5000', repository: 'app', tag: 'latest', digest: undefined });
});

t.test('defaultTag undefined leaves an untagged reference untagged', async (t) => {
  t.equal(parseImageReference('org/app', { defaultTag: undefined }).tag, undefined);
});

t.test('invalid references are refused with a reason', async (t) => {
  t.throws(() => parseImageReference('Nginx/App:1'), /repository name/);
  t.throws(() => parseImageReference('nginx:bad tag'), /tag/);
  t.throws(() => parseImageReference('nginx@sha256:123'), /digest/);
  t.throws(() => parseImageReference(''), /empty/);
});

t.test('an image list has one reference per line, # comments and blank lines ignored', async (t) => {
  t.same(parseImageList('# mirror these\nnginx:1.27\n\n  ghcr.io/org/app:1   # trailing comment\r\nalpine\n'), [
    'nginx:1.27',
    'ghcr.io/org/app:1',
    'alpine',
  ]);
});

t.test('a host is case-insensitive: an upper-case registry host is its lower-case namespace', async (t) => {
  t.equal(parseImageReference('GHCR.IO/org/app:1').namespace, 'ghcr.io');
  t.equal(parseImageReference('LocalHost/app').namespace, 'localhost');
});

t.test('an upper-case dotless first component is not taken for a host: the repository name is refused', async (t) => {
  t.throws(() => parseImageReference('Internal/app:1'), /repository name/);
});
