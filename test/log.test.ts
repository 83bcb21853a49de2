import { Writable } from 'node:stream';
import t from 'tap';
import { createLogger } from '../src/log.js';

t.test('secret fields never reach the log, at the top level or nested', async (t) => {
  let out = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      out += chunk.toString('utf8');
      done();
    },
  });
  const log = createLogger('info', sink);
  log.info(
    {
      password: 'Pw-top-1',
      secret: 'Sec-top-2',
      token: 'Tok-top-3',
      authorization: 'Basic QWxhZGRpbjpvcGVu',
      upstream: { username: 'robot', password: 'Pw-nested-4', access_token: 'Tok-nested-5', refresh_token: 'Tok-nested-6' },
      req: { headers: { authorization: 'Bearer Tok-deep-7', cookie: 'session=Ck-deep-8' } },
    },
    'hello',
  );
  const line = JSON.parse(out) as Record<string, unknown>;
  for (const secret of [
    'Pw-top-1',
    'Sec-top-2',
    'Tok-top-3',
    'QWxhZGRpbjpvcGVu',
    'Pw-nested-4',
    'Tok-nested-5',
    'Tok-nested-6',
    'Tok-deep-7',
    'Ck-deep-8',
  ]) {
    t.notOk(out.includes(secret), `${secret} is not logged`);
  }
  t.match(line, { msg: 'hello', upstream: { username: 'robot' } }, 'the rest is');
});
