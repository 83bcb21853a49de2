import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import bcrypt from 'bcryptjs';

const RELOAD_CHECK_MS = 10_000;
const VERIFIED_TTL_MS = 5 * 60_000;

interface LoadedFile {
  users: Map<string, string>;
  mtimeMs: number;
  checkedAt: number;
}

/**
 * Basic-auth verification against htpasswd files with bcrypt entries (`htpasswd -B`), as distribution's
 * htpasswd auth does. Files are re-read when they change. bcrypt is slow on purpose, so a verified
 * user:password pair is remembered (as a hash, never in clear) for a few minutes.
 */
export class HtpasswdVerifier {
  private readonly files = new Map<string, LoadedFile>();
  private readonly verified = new Map<string, number>();

  constructor(private readonly now: () => number = Date.now) {}

  /** True when `authorization` is a Basic header whose user and password match the file. */
  async verify(file: string, authorization: string | undefined): Promise<boolean> {
    const creds = parseBasic(authorization);
    if (!creds) return false;
    const users = await this.load(file);
    const hash = users.get(creds.username);
    if (!hash || !/^\$2[aby]\$/.test(hash)) return false;
    const key = createHash('sha256').update(`${file}\0${creds.username}\0${creds.password}\0${hash}`).digest('hex');
    const until = this.verified.get(key);
    if (until !== undefined && until > this.now()) return true;
    const ok = await bcrypt.compare(creds.password, hash.replace(/^\$2y\$/, '$2b$'));
    if (ok) {
      if (this.verified.size > 10_000) this.verified.clear();
      this.verified.set(key, this.now() + VERIFIED_TTL_MS);
    }
    return ok;
  }

  private async load(file: string): Promise<Map<string, string>> {
    const cached = this.files.get(file);
    const now = this.now();
    if (cached && now - cached.checkedAt < RELOAD_CHECK_MS) return cached.users;
    const s = await stat(file);
    if (cached && s.mtimeMs === cached.mtimeMs) {
      cached.checkedAt = now;
      return cached.users;
    }
    const users = new Map<string, string>();
    for (const line of (await readFile(file, 'utf8')).split('\n')) {
      const trimmed = line.trim();
      if (!trimmed || trimmed.startsWith('#')) continue;
      const colon = trimmed.indexOf(':');
      if (colon > 0) users.set(trimmed.slice(0, colon), trimmed.slice(colon + 1));
    }
    this.files.set(file, { users, mtimeMs: s.mtimeMs, checkedAt: now });
    return users;
  }
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
