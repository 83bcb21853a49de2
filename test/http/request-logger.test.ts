import { Writable } from 'node:stream';
import t from 'tap';
import { createLogger } from '../../src/log.js';
import { LazyRequestLogger, lazyChildLoggerFactory } from '../../src/http/request-logger.js';

function capture(level: 'info' | 'warn'): { log: ReturnType<typeof createLogger>; lines: () => Record<string, unknown>[] } {
  const out: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      out.push(chunk.toString());
      cb();
    },
  });
  const log = createLogger(level, sink);
  return {
    log,
    lines: () =>
      out
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

t.test('a record at an enabled level carries the request id and the fields, redacted as the parent does', async (t) => {
  const { log, lines } = capture('info');
  const child = lazyChildLoggerFactory(log)(log, { reqId: 'req-1' }, {});
  child.info({ path: '/v2/x', authorization: 'Basic secret' }, 'request');
  child.info({ n: 2 }, 'again');
  const [first, second] = lines();
  t.match(first, { reqId: 'req-1', path: '/v2/x', msg: 'request' });
  t.notOk(first && 'authorization' in first);
  t.match(second, { reqId: 'req-1', n: 2 });
});

t.test('below the level nothing is written and no pino child is made', async (t) => {
  const { log, lines } = capture('warn');
  let children = 0;
  const realChild = log.child.bind(log);
  log.child = ((...args: Parameters<typeof log.child>) => {
    children++;
    return realChild(...args);
  }) as typeof log.child;
  const lazy = new LazyRequestLogger(log, { reqId: 'req-2' });
  lazy.info({ a: 1 }, 'quiet');
  lazy.debug('quieter');
  t.equal(children, 0);
  t.equal(lazy.level, 'warn');
  lazy.warn({ b: 2 }, 'loud');
  t.equal(children, 1);
  t.match(lines(), [{ reqId: 'req-2', b: 2, msg: 'loud' }]);
});

t.test('a route with its own level gets a real child at once', async (t) => {
  const { log } = capture('warn');
  const child = lazyChildLoggerFactory(log)(log, { reqId: 'req-3' }, { level: 'debug' });
  t.notOk(child instanceof LazyRequestLogger);
  t.equal(child.level, 'debug');
});
