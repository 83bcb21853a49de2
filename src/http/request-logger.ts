import type { FastifyBaseLogger } from 'fastify';
import type { Bindings, ChildLoggerOptions, LogFn, Logger } from 'pino';

type LogLevelName = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';

/**
 * A request's logger (Fastify's `request.log`) that becomes a pino child, with the request id, only
 * when something is logged at an enabled level. A pino child costs its bindings' serialization and
 * redaction setup, and most requests log nothing through it (below the info level, none at all).
 */
export class LazyRequestLogger {
  declare fatal: LogFn;
  declare error: LogFn;
  declare warn: LogFn;
  declare info: LogFn;
  declare debug: LogFn;
  declare trace: LogFn;
  private real: Logger | undefined;

  constructor(
    private readonly parent: Logger,
    private readonly bindings: Bindings,
  ) {}

  get level(): string {
    return (this.real ?? this.parent).level;
  }

  set level(level: string) {
    this.materialize().level = level;
  }

  silent(): void {}

  child(bindings: Bindings, options?: ChildLoggerOptions): FastifyBaseLogger {
    return this.materialize().child(bindings, options);
  }

  /** The pino child itself, created on first use. */
  materialize(): Logger {
    this.real ??= this.parent.child(this.bindings);
    return this.real;
  }

  /** Whether a record at `level` would be written (lets callers skip building one). */
  isLevelEnabled(level: LogLevelName): boolean {
    return (this.real ?? this.parent).isLevelEnabled(level);
  }
}

for (const level of ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const) {
  LazyRequestLogger.prototype[level] = function (this: LazyRequestLogger, ...args: unknown[]): void {
    if (!this.isLevelEnabled(level)) return;
    const real = this.materialize();
    (real[level] as (...a: unknown[]) => void).apply(real, args);
  } as LogFn;
}

/**
 * Fastify's childLoggerFactory for `parent`. A route with its own level or serializers (none today)
 * gets a real child at once, so the level check above stays the parent's.
 */
export function lazyChildLoggerFactory(parent: Logger) {
  return (_logger: FastifyBaseLogger, bindings: Bindings, options: ChildLoggerOptions): FastifyBaseLogger => {
    if (options.level !== undefined || options.serializers !== undefined) return parent.child(bindings, options);
    return new LazyRequestLogger(parent, bindings);
  };
}
