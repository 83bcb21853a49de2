import { spawn } from 'node:child_process';
import { DOCKER_HUB_CREDENTIALS_KEY, isDockerHubHost } from '../oci/docker-hub.js';
import { OciError, type OciErrorCode } from '../oci/errors.js';

/**
 * Docker credential helpers (https://github.com/docker/docker-credential-helpers): a program named
 * `docker-credential-<name>` on PATH. `docker-credential-<name> get` reads the registry's server URL on
 * stdin and answers `{"ServerURL":"...","Username":"...","Secret":"..."}` on stdout, or exits non-zero
 * with a message on stdout (`credentials not found in native keychain` when it has none).
 *
 * A Username of `<token>` means Secret is an identity token (an OAuth2 refresh token), not a password.
 * The upstream client then answers Bearer challenges with the OAuth2 refresh-token grant (POST to the
 * realm with grant_type=refresh_token), as docker and distribution do; it cannot answer a Basic challenge.
 */

export const HELPER_TIMEOUT_MS = 10_000;
/** A helper's answer is a few hundred bytes; anything far larger is not a credential. */
const MAX_OUTPUT_BYTES = 64 * 1024;
/** Docker's identity-token marker in the Username field. */
const IDENTITY_TOKEN_USERNAME = '<token>';

export interface HelperCredentials {
  /** Empty for an identity token. */
  username: string;
  /** The password, or the identity token when identityToken is true. */
  secret: string;
  identityToken: boolean;
}

/** A failure of the helper itself (not of the credentials it gave): never retried by asking it again. */
export class CredentialHelperError extends OciError {}

export interface CredentialHelperOptions {
  /** `ecr-login` for `docker-credential-ecr-login`. */
  name: string;
  /** Written to the helper's stdin. */
  serverUrl: string;
  /** How long an answer is reused. */
  ttlMs: number;
  /** For error details. */
  namespace: string;
  timeoutMs?: number;
  now?: () => number;
}

/**
 * The server URL a helper is asked about: the upstream's host, except for Docker Hub, whose credentials
 * docker stores under `https://index.docker.io/v1/`.
 */
export function helperServerUrl(host: string): string {
  return isDockerHubHost(host) ? DOCKER_HUB_CREDENTIALS_KEY : host;
}

/** One helper for one upstream: answers cached for ttlMs, concurrent lookups share one run. */
export class CredentialHelper {
  readonly program: string;
  private cached: { creds: HelperCredentials; expiresAt: number } | undefined;
  private pending: Promise<HelperCredentials> | undefined;
  private readonly now: () => number;

  constructor(private readonly options: CredentialHelperOptions) {
    this.program = `docker-credential-${options.name}`;
    this.now = options.now ?? Date.now;
  }

  /** The cached credentials if still fresh, without running the helper. */
  current(): HelperCredentials | undefined {
    const c = this.cached;
    if (!c) return undefined;
    if (c.expiresAt <= this.now()) {
      this.cached = undefined;
      return undefined;
    }
    return c.creds;
  }

  async get(): Promise<HelperCredentials> {
    const fresh = this.current();
    if (fresh) return fresh;
    this.pending ??= this.run().then(
      (creds) => {
        this.pending = undefined;
        if (this.options.ttlMs > 0) this.cached = { creds, expiresAt: this.now() + this.options.ttlMs };
        return creds;
      },
      (e: unknown) => {
        this.pending = undefined;
        throw e;
      },
    );
    return this.pending;
  }

  /**
   * Forgets the cached answer, so the next get() runs the helper again. With `stale`, only when the cache
   * still holds exactly those credentials (another request may already have refreshed them).
   */
  invalidate(stale?: HelperCredentials): void {
    if (stale === undefined || this.cached?.creds === stale) this.cached = undefined;
  }

  private async run(): Promise<HelperCredentials> {
    const result = await runHelper(this.program, this.options.serverUrl, this.options.timeoutMs ?? HELPER_TIMEOUT_MS).catch(
      (e: unknown) => {
        throw this.error('UPSTREAM_ERROR', helperFailure(e, this.program), e);
      },
    );
    if (result.code !== 0) {
      // The protocol's "not found" answer: the helper has nothing for this registry.
      if (/credentials not found/i.test(result.stdout)) {
        throw this.error('DENIED', `credential helper ${this.program} has no credentials for ${this.options.serverUrl}`);
      }
      // Helper messages go to the server log (through the cause), not to clients.
      const said = firstLine(result.stdout) || firstLine(result.stderr);
      throw this.error(
        'UPSTREAM_ERROR',
        `credential helper ${this.program} failed (${result.signal ?? `exit ${result.code}`})`,
        said ? new Error(`${this.program}: ${said}`) : undefined,
      );
    }
    let doc: unknown;
    try {
      doc = JSON.parse(result.stdout);
    } catch {
      // Never quote the output: it may hold the secret.
      throw this.error('UPSTREAM_ERROR', `credential helper ${this.program} answered with something that is not JSON`);
    }
    const { Username: username, Secret: secret } = (doc ?? {}) as { Username?: unknown; Secret?: unknown };
    if (typeof username !== 'string' || typeof secret !== 'string' || secret === '') {
      throw this.error('UPSTREAM_ERROR', `credential helper ${this.program} answered without a Username and Secret`);
    }
    if (username === IDENTITY_TOKEN_USERNAME) return { username: '', secret, identityToken: true };
    return { username, secret, identityToken: false };
  }

  private error(code: OciErrorCode, message: string, cause?: unknown): CredentialHelperError {
    return new CredentialHelperError(code, message, {
      detail: { namespace: this.options.namespace, helper: this.program },
      ...(cause === undefined ? {} : { cause }),
    });
  }
}

interface HelperResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

class HelperTimeout extends Error {
  readonly code = 'ETIMEDOUT';
  constructor(readonly ms: number) {
    super(`timed out after ${ms} ms`);
  }
}

/**
 * `<program> get` with serverUrl on stdin; killed after timeoutMs. The helper runs in its own process
 * group, so that a helper script's children (which may hold its stdout open) are killed with it.
 */
function runHelper(program: string, serverUrl: string, timeoutMs: number): Promise<HelperResult> {
  return new Promise((resolve, reject) => {
    const posix = process.platform !== 'win32';
    const child = spawn(program, ['get'], { stdio: ['pipe', 'pipe', 'pipe'], windowsHide: true, detached: posix });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outBytes = 0;
    let errBytes = 0;
    let failed: Error | undefined;
    const kill = (why: Error): void => {
      clearTimeout(timer);
      failed ??= why;
      try {
        if (posix && child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
        else child.kill('SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
      // Do not wait for pipes some straggler may still hold.
      child.stdout.destroy();
      child.stderr.destroy();
      reject(failed);
    };
    const timer = setTimeout(() => kill(new HelperTimeout(timeoutMs)), timeoutMs);
    child.stdout.on('data', (b: Buffer) => {
      outBytes += b.length;
      if (outBytes <= MAX_OUTPUT_BYTES) out.push(b);
      else kill(new Error('output too large'));
    });
    child.stderr.on('data', (b: Buffer) => {
      errBytes += b.length;
      if (errBytes <= MAX_OUTPUT_BYTES) err.push(b);
    });
    // A helper that exits without reading stdin makes the write fail with EPIPE: its exit status tells more.
    child.stdin.on('error', () => undefined);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (failed) return reject(failed);
      resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8').trim(), stderr: Buffer.concat(err).toString('utf8').trim() });
    });
    child.stdin.end(serverUrl);
  });
}

function helperFailure(e: unknown, program: string): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return `credential helper ${program} not found on PATH`;
  if (code === 'EACCES') return `credential helper ${program} is not executable`;
  if (e instanceof HelperTimeout) return `credential helper ${program} did not answer within ${e.ms / 1000} s`;
  return `credential helper ${program} could not run (${code ?? (e as Error).message})`;
}

function firstLine(text: string): string {
  return (text.split('\n')[0] ?? '').trim().slice(0, 200);
}
