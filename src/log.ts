import { pino, type Logger } from 'pino';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Fields dropped from every log record, at the top level and one level down (e.g. `config.password`). */
const SECRET_FIELDS = ['password', 'secret', 'token', 'access_token', 'refresh_token', 'identitytoken', 'authorization', 'cookie'];

/** JSON lines on stdout. Credentials never reach a log call; the redaction is a second fence. */
export function createLogger(level: LogLevel = 'info', destination?: NodeJS.WritableStream): Logger {
  const options = {
    level,
    base: undefined,
    redact: { paths: SECRET_FIELDS.flatMap((f) => [f, `*.${f}`]).concat(['*.headers.authorization', '*.headers.cookie']), remove: true },
  };
  return destination ? pino(options, destination as unknown as pino.DestinationStream) : pino(options);
}
