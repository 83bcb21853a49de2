/**
 * Bearer tokens per scope, kept until shortly before they expire. Concurrent misses for one key share a
 * single token request (a burst of pulls must not become a burst of token fetches).
 */
export interface Token {
  value: string;
  expiresAt: number;
}

export class TokenCache {
  private readonly tokens = new Map<string, Token>();
  private readonly pending = new Map<string, Promise<Token>>();

  constructor(private readonly now: () => number = Date.now) {}

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
          this.tokens.set(key, token);
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
}
