import t from 'tap';
import { parseRange } from '../../src/http/range.js';

t.test('no Range header serves the full body', async (t) => {
  t.same(parseRange(undefined, 100), { kind: 'full' });
  t.same(parseRange('', 100), { kind: 'full' });
});

t.test('bytes=a-b is the inclusive range a..b', async (t) => {
  t.same(parseRange('bytes=0-9', 100), { kind: 'partial', range: { start: 0, end: 9 } });
  t.same(parseRange('bytes=10-10', 100), { kind: 'partial', range: { start: 10, end: 10 } });
});

t.test('an end beyond the size is clamped to the last byte', async (t) => {
  t.same(parseRange('bytes=90-1000', 100), { kind: 'partial', range: { start: 90, end: 99 } });
});

t.test('bytes=N- runs to the end', async (t) => {
  t.same(parseRange('bytes=40-', 100), { kind: 'partial', range: { start: 40, end: 99 } });
  t.same(parseRange('bytes=99-', 100), { kind: 'partial', range: { start: 99, end: 99 } });
});

t.test('the suffix bytes=-N is the last N bytes, the whole body when N exceeds it', async (t) => {
  t.same(parseRange('bytes=-10', 100), { kind: 'partial', range: { start: 90, end: 99 } });
  t.same(parseRange('bytes=-1000', 100), { kind: 'partial', range: { start: 0, end: 99 } });
});

t.test('a start at or beyond the size is unsatisfiable', async (t) => {
  t.same(parseRange('bytes=100-', 100), { kind: 'unsatisfiable' });
  t.same(parseRange('bytes=100-200', 100), { kind: 'unsatisfiable' });
  t.same(parseRange('bytes=0-', 0), { kind: 'unsatisfiable' });
});

t.test('a zero-length suffix, or any suffix of an empty body, is unsatisfiable', async (t) => {
  t.same(parseRange('bytes=-0', 100), { kind: 'unsatisfiable' });
  t.same(parseRange('bytes=-5', 0), { kind: 'unsatisfiable' });
});

t.test('syntax is tolerant of case and spaces', async (t) => {
  t.same(parseRange('Bytes = 1 - 2', 100), { kind: 'partial', range: { start: 1, end: 2 } });
});

t.test('invalid or unsupported ranges are ignored (full body), as RFC 9110 allows', async (t) => {
  for (const h of ['bytes=5-2', 'bytes=-', 'items=0-1', 'bytes=0-1,5-6', 'bytes=a-b', 'bytes 0-1', 'bytes=1.5-2']) {
    t.same(parseRange(h, 100), { kind: 'full' }, h);
  }
});
