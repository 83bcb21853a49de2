import { Lru } from '../proxy/lru.js';

/**
 * Bearer tokens per scope, kept until shortly before they expire. Concurrent misses for one key share a
 * single token request (a burst of pulls must not become a burst of token fetches).
 * Keys come from client input (each repository name is a scope), so the cache is an LRU bounded by the
 * bytes it holds; a token that falls out is simply fetched again.
 */
export interface Token {
  value: string;
  expiresAt: number;
}

export interface TokenCacheOptions {
  now?: () => number;
  /** Bytes of keys and tokens held at most (default 4 MiB: some thousands of registry JWTs). */
  maxBytes?: number;
}

/** Map and bookkeeping overhead counted per entry, so that tiny tokens cannot make the count unbounded. */
const ENTRY_OVERHEAD = 128;
export const DEFAULT_TOKEN_CACHE_BYTES = 4 * 1024 * 1024;

export class TokenCache {
  private readonly tokens: Lru<Token & { key: string }>;
  private readonly pending = new Map<string, Promise<Token>>();
  private readonly now: () => number;

  constructor(options: TokenCacheOptions | (() => number) = {}) {
    const opts = typeof options === 'function' ? { now: options } : options;
    this.now = opts.now ?? Date.now;
    this.tokens = new Lru(opts.maxBytes ?? DEFAULT_TOKEN_CACHE_BYTES, (t) => t.key.length + t.value.length + ENTRY_OVERHEAD);
  }

  get(key: string): string | undefined {
    const t = this.tokens.get(key);
    if (!t) return undefined;
    if (t.expiresAt <= this.now()) {
      this.tokens.delete(key);
      return undefined;
    }
    return t.value;
  }

  /** Returns the cached token or runs `fetch` once for all concurrent callers of this key. */
  async getOrFetch(key: string, fetch: () => Promise<Token>): Promise<string> {
    const cached = this.get(key);
    if (cached) return cached;
    let p = this.pending.get(key);
    if (!p) {
      p = fetch().then(
        (token) => {
          this.tokens.set(key, { ...token, key });
          this.pending.delete(key);
          return token;
        },
        (e: unknown) => {
          this.pending.delete(key);
          throw e;
        },
      );
      this.pending.set(key, p);
    }
    return (await p).value;
  }

  invalidate(key: string): void {
    this.tokens.delete(key);
  }

  /** Tokens held now (tests, metrics). */
  get size(): number {
    return this.tokens.size;
  }
}
