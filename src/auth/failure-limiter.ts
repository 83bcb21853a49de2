import { isIPv4, isIPv6 } from 'node:net';

export interface FailureLimiterOptions {
  /** Failed attempts an address may make at once. Default 10. */
  burst?: number;
  /** One more attempt is allowed every this many ms. Default 6000 (10 a minute). */
  refillMs?: number;
  /** Addresses remembered; the least recently failed are forgotten first. Default 10,000. */
  maxClients?: number;
  now?: () => number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * A token bucket of failed login attempts per client address: each failure takes a token, tokens come
 * back at a fixed rate, an address without tokens is limited until one returns. The map is bounded
 * (client addresses are attacker input); IPv6 clients are keyed by their /64, which one host usually owns.
 */
export class FailureLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly burst: number;
  private readonly refillMs: number;
  private readonly maxClients: number;
  private readonly now: () => number;

  constructor(options: FailureLimiterOptions = {}) {
    this.burst = options.burst ?? 10;
    this.refillMs = options.refillMs ?? 6000;
    this.maxClients = options.maxClients ?? 10_000;
    this.now = options.now ?? Date.now;
  }

  /** Seconds until `client` may try again, or 0 when it may now. */
  retryAfter(client: string): number {
    const b = this.current(clientKey(client));
    if (!b || b.tokens >= 1) return 0;
    return Math.max(1, Math.ceil(((1 - b.tokens) * this.refillMs) / 1000));
  }

  /** Takes a token for a failed attempt. */
  fail(client: string): void {
    const key = clientKey(client);
    const b = this.current(key) ?? { tokens: this.burst, at: this.now() };
    b.tokens = Math.max(0, b.tokens - 1);
    // Re-inserted, so the Map's first key is the least recently failed.
    this.buckets.delete(key);
    this.buckets.set(key, b);
    while (this.buckets.size > this.maxClients) {
      const oldest = this.buckets.keys().next();
      if (oldest.done) break;
      this.buckets.delete(oldest.value);
    }
  }

  /** The bucket refilled up to now; a full one is forgotten. */
  private current(key: string): Bucket | undefined {
    const b = this.buckets.get(key);
    if (!b) return undefined;
    const now = this.now();
    b.tokens = Math.min(this.burst, b.tokens + (now - b.at) / this.refillMs);
    b.at = now;
    if (b.tokens >= this.burst) {
      this.buckets.delete(key);
      return undefined;
    }
    return b;
  }
}

/** IPv4 as is (also when IPv4-mapped), IPv6 by its /64 prefix. */
export function clientKey(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1] as string;
  if (isIPv4(address) || !isIPv6(address)) return address;
  const [head = '', tail = ''] = address.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = address.includes('::') ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right] : left;
  return `${groups
    .slice(0, 4)
    .map((g) => parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}
