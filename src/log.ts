import { pino, type Logger } from 'pino';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** JSON lines on stdout. Credentials never reach a log call; the redaction is a second fence. */
export function createLogger(level: LogLevel = 'info', destination?: NodeJS.WritableStream): Logger {
  const options = {
    level,
    base: undefined,
    redact: { paths: ['password', '*.password', 'authorization', '*.authorization', 'headers.authorization'], remove: true },
  };
  return destination ? pino(options, destination as unknown as pino.DestinationStream) : pino(options);
}
