import { OciError } from '../oci/errors.js';
import { MAX_FAILOVER_BACKOFF_MS } from '../config/types.js';

/** Says when an upstream moves to another host, and when its primary serves again (the log). */
export interface FailoverListener {
  onFailover(namespace: string, from: string, to: string, reason: string): void;
  onPrimaryBack(namespace: string, host: string): void;
}

interface HostHealth {
  /** Skipped until then (epoch ms); 0 = healthy. */
  downUntil: number;
  /** The back-off of the last failure; doubled by the next one. 0 = healthy. */
  backoffMs: number;
}

/**
 * Which of an upstream's hosts to try, in which order. A host that failed (refused, timed out, 5xx/429)
 * is skipped for a back-off that starts at `initialMs` and doubles while it keeps failing, up to 5
 * minutes; then it is tried first again (the primary before the fallbacks, always). When every host is in
 * back-off they are all tried anyway, soonest-due first: a request never fails without an attempt.
 */
export class HostHealthTable {
  private readonly health: HostHealth[];

  constructor(
    readonly hosts: readonly string[],
    private readonly initialMs: number,
    private readonly now: () => number = Date.now,
  ) {
    this.health = hosts.map(() => ({ downUntil: 0, backoffMs: 0 }));
  }

  /** Host indexes to try: those due in config order, then those in back-off. */
  order(): number[] {
    const now = this.now();
    const indexes = this.hosts.map((_, i) => i);
    const due = indexes.filter((i) => this.at(i).downUntil <= now);
    const waiting = indexes.filter((i) => this.at(i).downUntil > now).sort((a, b) => this.at(a).downUntil - this.at(b).downUntil);
    return [...due, ...waiting];
  }

  /** Records a failure of host i; concurrent failures of the same attempt do not double the back-off twice. */
  failed(i: number): void {
    const h = this.at(i);
    const now = this.now();
    if (h.downUntil > now) return;
    h.backoffMs =
      h.backoffMs === 0
        ? this.initialMs
        : Math.min(Math.max(h.backoffMs * 2, this.initialMs), Math.max(MAX_FAILOVER_BACKOFF_MS, this.initialMs));
    h.downUntil = now + h.backoffMs;
  }

  /** Records an answer from host i; returns whether it had been in back-off (it is back). */
  succeeded(i: number): boolean {
    const h = this.at(i);
    const wasDown = h.backoffMs !== 0;
    h.backoffMs = 0;
    h.downUntil = 0;
    return wasDown;
  }

  private at(i: number): HostHealth {
    return this.health[i] as HostHealth;
  }
}

/**
 * Statuses that mean "this host cannot answer now" rather than an answer about the request: 5xx and 429.
 * 404, 401 and 403 are answers (the repository is missing or denied everywhere alike).
 */
export function isFailoverStatus(status: number): boolean {
  return status === 429 || status >= 500;
}

/** A failed exchange worth another host: unreachable, timed out, rate limited, or a 5xx from its token endpoint. */
export function isFailoverError(e: unknown): boolean {
  if (!(e instanceof OciError)) return false;
  if (e.code === 'UPSTREAM_UNAVAILABLE' || e.code === 'UPSTREAM_TIMEOUT' || e.code === 'TOOMANYREQUESTS') return true;
  const status = (e.detail as { upstreamStatus?: unknown } | undefined)?.upstreamStatus;
  return e.code === 'UPSTREAM_ERROR' && typeof status === 'number' && status >= 500;
}
