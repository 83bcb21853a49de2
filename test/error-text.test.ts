import t from 'tap';
import { errorText } from '../src/error-text.js';
import { OciError } from '../src/oci/errors.js';

t.test('an Error is its message', async (t) => {
  t.equal(errorText(new Error('disk full')), 'disk full');
});

t.test('a code the message does not name is added after it', async (t) => {
  t.equal(errorText(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })), 'socket hang up (ECONNRESET)');
});

t.test('a code the message already names is not repeated', async (t) => {
  t.equal(
    errorText(Object.assign(new Error("ENOENT: no such file or directory, open 'x'"), { code: 'ENOENT' })),
    "ENOENT: no such file or directory, open 'x'",
  );
});

t.test('an OCI error shows its code and its detail', async (t) => {
  t.equal(
    errorText(new OciError('NAME_UNKNOWN', 'namespace is not mirrored here', { detail: { namespace: 'ghcr.io' } })),
    'namespace is not mirrored here (NAME_UNKNOWN) {"namespace":"ghcr.io"}',
  );
});

t.test('a long detail is cut at 300 characters', async (t) => {
  const text = errorText(new OciError('NAME_INVALID', 'invalid repository name', { detail: { name: 'x'.repeat(1000) } }));
  t.ok(text.endsWith('...'));
  t.ok(text.length < 'invalid repository name (NAME_INVALID) '.length + 300 + 4);
});

t.test('a detail that cannot be serialised is left out rather than thrown', async (t) => {
  const detail: Record<string, unknown> = {};
  detail['self'] = detail;
  t.equal(errorText(Object.assign(new Error('loop'), { detail })), 'loop');
});

t.test('an Error with an empty message is its name', async (t) => {
  t.equal(errorText(new TypeError('')), 'TypeError');
});

t.test('anything else thrown is its string form, even without a prototype', async (t) => {
  t.equal(errorText('plain string'), 'plain string');
  t.equal(errorText(undefined), 'undefined');
  t.equal(errorText(Object.create(null)), '[object Object]');
});
