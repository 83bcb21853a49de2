import { createHmac, randomBytes } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { OciError } from '../oci/errors.js';
import { BcryptPool, PoolBusyError } from './bcrypt-pool.js';
import { FailureLimiter, type FailureLimiterOptions } from './failure-limiter.js';
import { TtlLru } from './ttl-lru.js';

const RELOAD_CHECK_MS = 10_000;
/** A verified user:password is trusted this long without bcrypt (a changed file changes the key at once). */
const VERIFIED_TTL_MS = 5 * 60_000;
/** A failed one is answered from memory this long: repeating a wrong password costs no bcrypt. */
const FAILED_TTL_MS = 30_000;
const MAX_REMEMBERED = 10_000;

interface LoadedFile {
  users: Map<string, string>;
  /** A bcrypt hash of the file, compared against for unknown users so that they take as long as known ones. */
  decoy: string | undefined;
  mtimeMs: number;
  checkedAt: number;
}

export interface HtpasswdVerifierOptions {
  now?: () => number;
  /** bcrypt compares; default a worker-thread pool (closed by close()). */
  compare?: (password: string, hash: string) => Promise<boolean>;
  /** Failed attempts per client address; `false` turns the limit off (tests). */
  failureLimit?: FailureLimiterOptions | false;
}

/**
 * Basic-auth verification against htpasswd files with bcrypt entries (`htpasswd -B`), as distribution's
 * htpasswd auth does. Files are re-read when they change. bcrypt runs off the event loop (BcryptPool);
 * results are remembered under an HMAC of file, user, password and entry (never the password in clear):
 * successes for minutes, failures for seconds. Concurrent checks of the same credentials share one compare.
 * Each client address may fail a few compares, then one every few seconds (FailureLimiter); beyond that
 * it gets TOOMANYREQUESTS without a compare, while credentials already verified keep working.
 */
export class HtpasswdVerifier {
  private readonly files = new Map<string, LoadedFile>();
  private readonly verified: TtlLru;
  private readonly failed: TtlLru;
  private readonly running = new Map<string, Promise<boolean>>();
  private readonly limiter: FailureLimiter | undefined;
  private readonly pool: BcryptPool | undefined;
  private readonly compare: (password: string, hash: string) => Promise<boolean>;
  private readonly now: () => number;
  /** Keys the result caches: a memory dump holds no fast hash of a password to brute-force offline. */
  private readonly secret = randomBytes(32);

  constructor(options: HtpasswdVerifierOptions = {}) {
    this.now = options.now ?? Date.now;
    this.verified = new TtlLru(MAX_REMEMBERED, this.now);
    this.failed = new TtlLru(MAX_REMEMBERED, this.now);
    this.limiter = options.failureLimit === false ? undefined : new FailureLimiter({ now: this.now, ...options.failureLimit });
    if (options.compare) this.compare = options.compare;
    else {
      const pool = new BcryptPool();
      this.pool = pool;
      this.compare = (password, hash) => pool.compare(password, hash);
    }
  }

  /**
   * True when `authorization` is a Basic header whose user and password match the file. `client` is the
   * request's address, for the failed-attempt limit. Throws TOOMANYREQUESTS when that address is limited
   * or too many compares are waiting already.
   */
  async verify(file: string, authorization: string | undefined, client: string): Promise<boolean> {
    const creds = parseBasic(authorization);
    if (!creds) return false;
    const loaded = await this.load(file);
    const hash = loaded.users.get(creds.username);
    const key = createHmac('sha256', this.secret)
      .update(`${file}\0${creds.username}\0${creds.password}\0${hash ?? ''}`)
      .digest('hex');
    if (this.verified.has(key)) return true;
    if (this.failed.has(key)) return false;
    const joined = this.running.get(key);
    if (joined) return joined;

    const wait = this.limiter?.retryAfter(client) ?? 0;
    if (wait > 0) {
      throw new OciError('TOOMANYREQUESTS', 'too many failed login attempts from this address', { retryAfter: wait });
    }
    const check = this.check(creds.password, hash, loaded.decoy)
      .catch((e: unknown) => {
        if (e instanceof PoolBusyError)
          throw new OciError('TOOMANYREQUESTS', 'too many logins being checked; retry shortly', { retryAfter: 1 });
        throw e;
      })
      .finally(() => this.running.delete(key));
    this.running.set(key, check);
    const ok = await check;
    if (ok) this.verified.set(key, VERIFIED_TTL_MS);
    else {
      this.failed.set(key, FAILED_TTL_MS);
      this.limiter?.fail(client);
    }
    return ok;
  }

  /** Stops the bcrypt workers. */
  async close(): Promise<void> {
    await this.pool?.close();
  }

  private async check(password: string, hash: string | undefined, decoy: string | undefined): Promise<boolean> {
    if (hash !== undefined && isBcrypt(hash)) return this.compare(password, normalize(hash));
    // An unknown user costs what a known one does, so timing does not tell which users exist.
    if (hash === undefined && decoy !== undefined) await this.compare(password, normalize(decoy));
    return false;
  }

  private async load(file: string): Promise<LoadedFile> {
    const cached = this.files.get(file);
    const now = this.now();
    if (cached && now - cached.checkedAt < RELOAD_CHECK_MS) return cached;
    const s = await stat(file);
    if (cached && s.mtimeMs === cached.mtimeMs) {
      cached.checkedAt = now;
      return cached;
    }
    const users = new Map<string, string>();
    for (const line of (await readFile(file, 'utf8')).split('\n')) {
      const trimmed = line.trim();
      if (!trimmed || trimmed.startsWith('#')) continue;
      const colon = trimmed.indexOf(':');
      if (colon > 0) users.set(trimmed.slice(0, colon), trimmed.slice(colon + 1));
    }
    const loaded: LoadedFile = { users, decoy: [...users.values()].find(isBcrypt), mtimeMs: s.mtimeMs, checkedAt: now };
    this.files.set(file, loaded);
    return loaded;
  }
}

function isBcrypt(hash: string): boolean {
  return /^\$2[aby]\$/.test(hash);
}

/** `htpasswd -B` writes $2y$, which bcryptjs knows as $2b$ (the same algorithm). */
function normalize(hash: string): string {
  return hash.replace(/^\$2y\$/, '$2b$');
}

function parseBasic(header: string | undefined): { username: string; password: string } | undefined {
  if (!header) return undefined;
  const m = /^\s*Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (!m) return undefined;
  const decoded = Buffer.from(m[1] as string, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}
