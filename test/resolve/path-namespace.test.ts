import t from 'tap';
import { parsePathHostPort, pathSegmentFor } from '../../src/resolve/path-namespace.js';
import { isValidRepositoryName } from '../../src/oci/names.js';

t.test('parsePathHostPort splits host_port at the last _ into the namespace host:port', async (t) => {
  t.same(parsePathHostPort('registry.local_5000'), { host: 'registry.local', port: '5000', namespace: 'registry.local:5000' });
  t.same(parsePathHostPort('127.0.0.1_5000'), { host: '127.0.0.1', port: '5000', namespace: '127.0.0.1:5000' });
  t.same(parsePathHostPort('localhost_1'), { host: 'localhost', port: '1', namespace: 'localhost:1' });
  t.same(parsePathHostPort('my_65535')?.namespace, 'my:65535', "dotless: whether it is a host is the resolver's call");
});

t.test('parsePathHostPort: no port, a port outside 1-65535, or a host part no host name has is not host_port', async (t) => {
  for (const segment of [
    'registry.local',
    'registry.local_',
    'registry.local_0',
    'registry.local_65536',
    'registry.local_123456',
    'registry.local_5a',
    '_5000',
    'a_b.example_5000',
    '[::1]_5000',
    '::1_5000',
    'my_repo',
  ]) {
    t.equal(parsePathHostPort(segment), undefined, segment);
  }
});

t.test('pathSegmentFor writes a port as _port and leaves other namespaces alone', async (t) => {
  t.equal(pathSegmentFor('registry.local:5000'), 'registry.local_5000');
  t.equal(pathSegmentFor('127.0.0.1:5000'), '127.0.0.1_5000');
  t.equal(pathSegmentFor('docker.io'), 'docker.io');
  t.equal(pathSegmentFor('Registry.Local:5000'), 'registry.local_5000', 'lower case, as path components must be');
  t.equal(pathSegmentFor('[::1]:5000'), undefined, 'no path form for an IPv6 literal');
});

t.test('the path form round-trips and is a valid repository path component, as image references require', async (t) => {
  for (const ns of ['registry.local:5000', '127.0.0.1:5000', 'localhost:5000', 'a-b.example.com:443']) {
    const segment = pathSegmentFor(ns) as string;
    t.equal(parsePathHostPort(segment)?.namespace, ns, ns);
    t.ok(isValidRepositoryName(`${segment}/app`), `${segment}/app is a valid name`);
  }
});
