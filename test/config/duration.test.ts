import t from 'tap';
import { formatDuration, isDuration, parseDuration } from '../../src/config/duration.js';

t.test('single-unit durations parse to milliseconds', async (t) => {
  t.equal(parseDuration('0s'), 0);
  t.equal(parseDuration('500ms'), 500);
  t.equal(parseDuration('30s'), 30_000);
  t.equal(parseDuration('90m'), 90 * 60_000);
  t.equal(parseDuration('12h'), 12 * 3_600_000);
  t.equal(parseDuration('14d'), 14 * 86_400_000);
  t.equal(parseDuration('30d'), 30 * 86_400_000);
  t.equal(parseDuration('2w'), 14 * 86_400_000);
});

t.test('compound and fractional durations add up', async (t) => {
  t.equal(parseDuration('1h30m'), 90 * 60_000);
  t.equal(parseDuration('1d12h'), 36 * 3_600_000);
  t.equal(parseDuration('1.5h'), 90 * 60_000);
  t.equal(parseDuration('1s500ms'), 1500);
});

t.test('surrounding whitespace is ignored', async (t) => {
  t.equal(parseDuration(' 5m '), 300_000);
});

t.test('text that is not a duration is undefined', async (t) => {
  for (const bad of ['', ' ', '10', 'm', '5x', '-5s', '5 s', '5S', 'five minutes', '1h 30m', 's5', '1.h', '.5h']) {
    t.equal(parseDuration(bad), undefined, JSON.stringify(bad));
    t.notOk(isDuration(bad), JSON.stringify(bad));
  }
});

t.test('isDuration accepts what parseDuration parses', async (t) => {
  t.ok(isDuration('0s'));
  t.ok(isDuration('1h30m'));
});

t.test('formatDuration picks the largest whole unit', async (t) => {
  t.equal(formatDuration(14 * 86_400_000), '14d');
  t.equal(formatDuration(3 * 3_600_000), '3h');
  t.equal(formatDuration(90 * 60_000), '90m');
  t.equal(formatDuration(1500), '1.5s');
  t.equal(formatDuration(0), '0s');
});

t.test('formatDuration output parses back to the same value', async (t) => {
  for (const ms of [0, 1500, 60_000, 5_400_000, 86_400_000, 14 * 86_400_000]) {
    t.equal(parseDuration(formatDuration(ms)), ms, String(ms));
  }
});
