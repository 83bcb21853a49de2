import type { OciError } from '../oci/errors.js';
import type { ProxyObserver } from '../proxy/events.js';
import type { UpstreamObserver } from '../upstream/upstream-client.js';

/**
 * Namespaces remembered beyond those in the config file. With unlisted namespaces allowed, clients choose
 * namespaces, so the map must not grow without bound: past this, the least recently seen unlisted one goes.
 */
export const MAX_UNLISTED_NAMESPACES = 100;
/** Messages are ours (codes and fixed texts), but a reason can quote an error's message: keep it short. */
const MAX_MESSAGE_CHARS = 300;

export interface HealthEvent {
  at: number;
  message: string;
}

export interface UpstreamHealthEntry {
  lastSuccess: HealthEvent | undefined;
  lastError: HealthEvent | undefined;
}

/**
 * The last success and the last error of each upstream, for the status page: observes every upstream
 * exchange (as the metrics do) and the end of every blob download (a body can fail after a 200).
 * A response counts as an error when the upstream refused (401, 403), limited (429) or failed (5xx);
 * any other answer, a 404 included, shows the upstream up and answering. Costs one map update per exchange.
 */
export class UpstreamHealth implements UpstreamObserver, ProxyObserver {
  private readonly entries = new Map<string, UpstreamHealthEntry>();
  private unlisted = 0;

  constructor(
    /** Namespaces of the config file: always kept. */
    private readonly configured: (namespace: string) => boolean,
    private readonly now: () => number = Date.now,
  ) {}

  onResponse(namespace: string, kind: string, status: number): void {
    const message = `${kind}: HTTP ${status}${STATUS_MEANING[status] ?? (status >= 500 ? ' (upstream failure)' : '')}`;
    if (status === 401 || status === 403 || status === 429 || status >= 500) this.error(namespace, message);
    else this.success(namespace, message);
  }

  onError(namespace: string, kind: string, code: string, _host: string, error?: OciError): void {
    this.error(namespace, `${kind}: ${error ? describe(error) : code}`);
  }

  downloadFinished(namespace: string, result: 'stored' | 'uncached' | 'failed' | 'digest_mismatch'): void {
    if (result === 'digest_mismatch') this.error(namespace, 'blob: the body did not match its digest (nothing stored)');
    else if (result === 'failed') this.error(namespace, 'blob: the download failed before its end (nothing stored; see the log)');
  }

  get(namespace: string): UpstreamHealthEntry | undefined {
    return this.entries.get(namespace);
  }

  namespaces(): string[] {
    return [...this.entries.keys()];
  }

  private success(namespace: string, message: string): void {
    this.touch(namespace).lastSuccess = { at: this.now(), message };
  }

  private error(namespace: string, message: string): void {
    this.touch(namespace).lastError = { at: this.now(), message: message.slice(0, MAX_MESSAGE_CHARS) };
  }

  /** The entry, moved to the end of the map (most recently seen last). */
  private touch(namespace: string): UpstreamHealthEntry {
    let entry = this.entries.get(namespace);
    if (entry) {
      this.entries.delete(namespace);
    } else {
      entry = { lastSuccess: undefined, lastError: undefined };
      if (!this.configured(namespace) && ++this.unlisted > MAX_UNLISTED_NAMESPACES) this.dropOldestUnlisted();
    }
    this.entries.set(namespace, entry);
    return entry;
  }

  private dropOldestUnlisted(): void {
    for (const ns of this.entries.keys()) {
      if (this.configured(ns)) continue;
      this.entries.delete(ns);
      this.unlisted--;
      return;
    }
  }
}

const STATUS_MEANING: Record<number, string> = {
  401: ' (credentials missing or refused)',
  403: ' (access denied)',
  429: ' (rate limited)',
};

/** `upstream unreachable (ECONNREFUSED)`, `upstream unavailable (HTTP 503)`: the error's text and reason. */
function describe(error: OciError): string {
  const detail = (error.detail ?? {}) as { reason?: unknown; upstreamStatus?: unknown };
  const extra =
    typeof detail.reason === 'string'
      ? detail.reason
      : typeof detail.upstreamStatus === 'number'
        ? `HTTP ${detail.upstreamStatus}`
        : undefined;
  return extra ? `${error.message} (${extra})` : error.message;
}
