import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { UpstreamConfig } from '../config/types.js';
import { createDigester, tryParseDigest } from '../oci/digest.js';
import { OciError } from '../oci/errors.js';
import { MAX_MANIFEST_BYTES } from '../oci/limits.js';
import { DOCKER_MANIFEST_V1_SIGNED, UPSTREAM_MANIFEST_ACCEPT } from '../oci/media-types.js';
import { parseIndexManifests, type ReferrerDescriptor } from '../oci/referrers.js';
import { discard } from './body.js';
import { HostHealthTable, isFailoverError, isFailoverStatus } from './failover.js';
import { parseChallenge } from './challenge.js';
import { CredentialHelper, CredentialHelperError, helperServerUrl, type HelperCredentials } from './credential-helper.js';
import { statusError, transportError } from './errors.js';
import { upstreamManifestType } from './manifest-type.js';
import { TokenCache, type Token } from './token-cache.js';
import { mayReceiveCredentials } from './token-realm.js';
import { readCapped, TooLargeError } from '../read-capped.js';
import { DEFAULT_USER_AGENT } from '../version.js';
import { undici } from './undici.js';

const MAX_SMALL_BODY = 4 * 1024 * 1024;
/** Token responses are a few KiB; a token has to fit in a request header anyway. */
const MAX_TOKEN_BODY = 256 * 1024;
const MAX_TOKEN_LENGTH = 32 * 1024;
/** What a Bearer token may contain: visible ASCII, so it can never break the Authorization header. */
const TOKEN_CHARS = /^[\x21-\x7e]+$/;
const MAX_REDIRECTS = 5;

export interface UpstreamReply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Readable & { dump?: () => Promise<void> };
  /** The token realm host our credentials were withheld from while getting this reply (for the error text). */
  withheldFrom?: string | undefined;
}

export interface UpstreamClientOptions {
  /** A token cache shared by several clients (the pool's); keys are prefixed with this client's upstream and host. */
  tokens?: TokenCache;
  /** The entry's fallback hosts, each with its own settings (config/upstreams.ts fallbackConfig) and agent. */
  fallbacks?: readonly { config: UpstreamConfig; dispatcher: Dispatcher }[];
  /** Where failovers and a primary's return are logged. */
  log?: FailoverLog | undefined;
  /** Clock of the hosts' back-off (tests). */
  now?: () => number;
}

export interface FailoverLog {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

/** What one logical request learned on its way (answered challenges). */
interface SendContext {
  withheldFrom: string | undefined;
}

export interface FetchedManifest {
  digest: string;
  mediaType: string;
  bytes: Buffer;
}

export interface ManifestHead {
  /** Absent when the upstream does not send Docker-Content-Digest; the caller then GETs. */
  digest: string | undefined;
  mediaType: string;
  size: number;
}

export interface UpstreamBlob {
  size: number | undefined;
  body: Readable;
}

export interface TagPage {
  tags: string[];
  /** Whether upstream said more tags follow. */
  more: boolean;
}

export interface ReferrersReply {
  /** The usable descriptors of the upstream's index. */
  manifests: ReferrerDescriptor[];
  /** The upstream's OCI-Filters-Applied header. */
  filtersApplied: string | undefined;
}

/** Observes every upstream exchange (metrics); kept abstract so upstream/ does not know the metrics library. */
export interface UpstreamObserver {
  /** `host` is the configured host that answered (the primary or a fallback; never a redirect target). */
  onResponse(namespace: string, kind: string, status: number, seconds: number, host: string): void;
  /** `error` (message and detail, never credentials) is for the status page's last-error column. */
  onError(namespace: string, kind: string, code: string, host: string, error?: OciError): void;
  /** A request moved on from host `from` to the next one, `to`. */
  onFailover?(namespace: string, from: string, to: string): void;
}

interface AuthState {
  scheme: 'basic' | 'bearer' | undefined;
}

/**
 * Talks to one upstream registry: auth challenges (Basic, Bearer tokens cached per scope), redirects
 * (Authorization dropped when the origin changes), and maps failures to OCI error values. With fallback
 * hosts, each host is a client of its own (settings, credentials, tokens) and `send` picks the host.
 */
export class UpstreamClient {
  readonly namespace: string;
  private readonly base: string;
  private readonly tokens: TokenCache;
  /** Prefix of this client's keys in a shared token cache. */
  private readonly tokenPrefix: string;
  private readonly auth: AuthState = { scheme: undefined };
  private readonly userAgent: string;
  /** Supplies the credentials when the upstream names a credential_helper. */
  private readonly helper: CredentialHelper | undefined;

  /** Logical requests running now, and who waits for there to be none (the pool, before closing our agent). */
  private active = 0;
  private idleWaiters: (() => void)[] = [];
  /** This host, then the fallbacks (each a client of its own: settings, auth state, tokens per host). */
  private readonly hosts: readonly UpstreamClient[];
  private readonly health: HostHealthTable;
  private readonly log: FailoverLog | undefined;

  constructor(
    readonly config: UpstreamConfig,
    private readonly dispatcher: Dispatcher,
    private readonly observer?: UpstreamObserver,
    options: UpstreamClientOptions = {},
  ) {
    this.namespace = config.namespace;
    this.tokens = options.tokens ?? new TokenCache();
    this.tokenPrefix = `${config.namespace}\0${config.host}\0`;
    this.base = `${config.tls ? 'https' : 'http'}://${config.host}`;
    this.userAgent = config.userAgent ?? DEFAULT_USER_AGENT;
    this.helper = config.credentialHelper
      ? new CredentialHelper({
          name: config.credentialHelper,
          serverUrl: helperServerUrl(config.host),
          ttlMs: config.credentialTtlMs,
          namespace: config.namespace,
        })
      : undefined;
    const fallbacks = (options.fallbacks ?? []).map((f) => new UpstreamClient(f.config, f.dispatcher, observer, { tokens: this.tokens }));
    this.hosts = [this, ...fallbacks];
    this.health = new HostHealthTable(
      this.hosts.map((h) => h.config.host),
      config.failoverBackoffMs,
      options.now,
    );
    this.log = options.log;
  }

  async headManifest(repo: string, reference: string): Promise<ManifestHead> {
    const reply = await this.send('manifest', 'HEAD', repo, `/v2/${repo}/manifests/${reference}`, { accept: UPSTREAM_MANIFEST_ACCEPT });
    await discard(reply.body);
    if (reply.status !== 200) throw this.fail(reply, 'MANIFEST_UNKNOWN');
    const digest = header(reply.headers, 'docker-content-digest');
    return {
      digest: digest && tryParseDigest(digest) ? digest : undefined,
      mediaType: header(reply.headers, 'content-type') ?? '',
      size: Number(header(reply.headers, 'content-length') ?? 0),
    };
  }

  async getManifest(repo: string, reference: string): Promise<FetchedManifest> {
    const reply = await this.send('manifest', 'GET', repo, `/v2/${repo}/manifests/${reference}`, { accept: UPSTREAM_MANIFEST_ACCEPT });
    if (reply.status !== 200) {
      await discard(reply.body);
      throw this.fail(reply, 'MANIFEST_UNKNOWN');
    }
    if (Number(header(reply.headers, 'content-length') ?? 0) > MAX_MANIFEST_BYTES) {
      reply.body.destroy();
      throw new OciError('UPSTREAM_ERROR', `upstream manifest exceeds ${MAX_MANIFEST_BYTES} bytes`, {
        detail: { namespace: this.namespace },
      });
    }
    const bytes = await this.readBody(reply.body, MAX_MANIFEST_BYTES, 'manifest');
    // The digest is of the bytes: by-digest requests must match, by-tag ones use the header's algorithm.
    const requested = tryParseDigest(reference);
    const announced = tryParseDigest(header(reply.headers, 'docker-content-digest') ?? '');
    const algorithm = requested?.algorithm ?? announced?.algorithm ?? 'sha256';
    const digest = `${algorithm}:${createDigester(algorithm).update(bytes).digest('hex')}`;
    const type = upstreamManifestType(header(reply.headers, 'content-type'), bytes);
    // Never stored or served: a login page or proxy error answering 200 is an upstream failure.
    if ('problem' in type) throw new OciError('UPSTREAM_ERROR', type.problem, { detail: { namespace: this.namespace } });
    const mediaType = type.mediaType;
    // Signed schema1 manifests announce the digest of their payload without signatures; nothing to compare.
    if (
      !requested &&
      announced &&
      announced.algorithm === algorithm &&
      announced.value !== digest &&
      mediaType !== DOCKER_MANIFEST_V1_SIGNED
    ) {
      throw new OciError('UPSTREAM_ERROR', 'upstream manifest does not match its Docker-Content-Digest', {
        detail: { namespace: this.namespace, announced: announced.value, received: digest },
      });
    }
    if (requested && digest !== requested.value) {
      throw new OciError('UPSTREAM_ERROR', 'upstream manifest does not match the requested digest', {
        detail: { namespace: this.namespace, requested: requested.value, received: digest },
      });
    }
    return { digest, mediaType, bytes };
  }

  /**
   * Starts a blob download; the caller owns (and must consume or destroy) the body. A Content-Length above
   * `maxBytes` is refused before any byte is read (the body may still run past it when it announced none:
   * the caller counts).
   */
  async getBlob(repo: string, digest: string, opts: { maxBytes?: number; signal?: AbortSignal } = {}): Promise<UpstreamBlob> {
    const reply = await this.send('blob', 'GET', repo, `/v2/${repo}/blobs/${digest}`, { signal: opts.signal });
    if (reply.status !== 200) {
      await discard(reply.body);
      throw this.fail(reply, 'BLOB_UNKNOWN');
    }
    const length = header(reply.headers, 'content-length');
    const size = length === undefined ? undefined : Number(length);
    if (size !== undefined && size > (opts.maxBytes ?? Number.POSITIVE_INFINITY)) {
      // Not drained: it may be endless. The connection is dropped instead.
      reply.body.destroy();
      throw new OciError('UPSTREAM_ERROR', 'upstream blob is larger than the mirror accepts', {
        detail: { namespace: this.namespace, digest, size, maxBytes: opts.maxBytes },
      });
    }
    return { size, body: reply.body };
  }

  /** The blob's size if upstream has it, undefined on 404; throws on outages. */
  async headBlob(repo: string, digest: string): Promise<{ size: number | undefined } | undefined> {
    const reply = await this.send('blob', 'HEAD', repo, `/v2/${repo}/blobs/${digest}`, {});
    await discard(reply.body);
    if (reply.status === 404) return undefined;
    if (reply.status !== 200) throw this.fail(reply, 'BLOB_UNKNOWN');
    const length = header(reply.headers, 'content-length');
    return { size: length === undefined ? undefined : Number(length) };
  }

  async getTags(repo: string, n: number | undefined, last: string | undefined): Promise<TagPage> {
    const q = new URLSearchParams();
    if (n !== undefined) q.set('n', String(n));
    if (last !== undefined) q.set('last', last);
    const qs = q.toString();
    const reply = await this.send('tags', 'GET', repo, `/v2/${repo}/tags/list${qs ? `?${qs}` : ''}`, {});
    if (reply.status !== 200) {
      await discard(reply.body);
      throw this.fail(reply, 'NAME_UNKNOWN');
    }
    const doc = this.parseObject(await this.readBody(reply.body, MAX_SMALL_BODY, 'tag list'), 'tag list');
    // Some registries answer `"tags": null` for a repository without tags.
    if (doc['tags'] !== undefined && doc['tags'] !== null && !Array.isArray(doc['tags'])) {
      throw new OciError('UPSTREAM_ERROR', 'upstream tag list has no list of tags', { detail: { namespace: this.namespace } });
    }
    const tags = Array.isArray(doc['tags']) ? doc['tags'].filter((t): t is string => typeof t === 'string') : [];
    return { tags, more: /rel="?next"?/.test(header(reply.headers, 'link') ?? '') };
  }

  /**
   * The referrers index, or undefined when the upstream does not implement the API. A registry with the
   * API never answers 404 (spec: an unknown subject is an empty index), so 404, 405, 501 and a 400 for a
   * digest we validated mean "no API"; so does a 200 whose body is not an image index (some registries
   * answer unknown paths with a page).
   */
  async getReferrers(repo: string, digest: string, artifactType: string | undefined): Promise<ReferrersReply | undefined> {
    const qs = artifactType ? `?${new URLSearchParams({ artifactType }).toString()}` : '';
    const reply = await this.send('referrers', 'GET', repo, `/v2/${repo}/referrers/${digest}${qs}`, {});
    if (reply.status === 404 || reply.status === 400 || reply.status === 405 || reply.status === 501) {
      await discard(reply.body);
      return undefined;
    }
    if (reply.status !== 200) {
      await discard(reply.body);
      throw this.fail(reply, 'MANIFEST_UNKNOWN');
    }
    const manifests = parseIndexManifests(await this.readBody(reply.body, MAX_MANIFEST_BYTES, 'referrers index'));
    if (!manifests) return undefined;
    return { manifests, filtersApplied: header(reply.headers, 'oci-filters-applied') };
  }

  private fail(reply: UpstreamReply, notFound: 'MANIFEST_UNKNOWN' | 'BLOB_UNKNOWN' | 'NAME_UNKNOWN'): OciError {
    return this.withheldHint(statusError(this.namespace, reply.status, notFound, header(reply.headers, 'retry-after')), reply.withheldFrom);
  }

  /** A denial after we kept our credentials from a token realm says so: the fix is token_realm_hosts. */
  private withheldHint(err: OciError, withheldFrom: string | undefined): OciError {
    if (err.code !== 'DENIED' || withheldFrom === undefined) return err;
    return new OciError(
      'DENIED',
      `upstream denied access; the mirror did not send its credentials to the token realm ${withheldFrom} (an operator may allow it with token_realm_hosts)`,
      { detail: err.detail },
    );
  }

  /** A JSON object from upstream; anything else (null, a list, bad JSON) is an upstream error, never a crash. */
  private parseObject(bytes: Buffer, what: string): Record<string, unknown> {
    let doc: unknown;
    try {
      doc = JSON.parse(bytes.toString('utf8'));
    } catch {
      throw new OciError('UPSTREAM_ERROR', `upstream ${what} is not valid JSON`, { detail: { namespace: this.namespace } });
    }
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
      throw new OciError('UPSTREAM_ERROR', `upstream ${what} is not a JSON object`, { detail: { namespace: this.namespace } });
    }
    return doc as Record<string, unknown>;
  }

  /** A small body, capped (an upstream cannot make us buffer a blob); failures as OCI errors. */
  private async readBody(body: Readable, limit: number, what: string): Promise<Buffer> {
    try {
      return await readCapped(body, limit, what);
    } catch (e) {
      if (e instanceof TooLargeError)
        throw new OciError('UPSTREAM_ERROR', `upstream ${e.message}`, { detail: { namespace: this.namespace } });
      throw transportError(this.namespace, e);
    }
  }

  /**
   * One logical request on the first host that answers it: the primary, or in order the fallbacks while
   * hosts refuse connections, time out or answer 5xx/429 (failover.ts). The reply's body is the caller's:
   * a body failing mid-stream is not retried elsewhere (the next request may be).
   */
  private async send(
    kind: string,
    method: 'GET' | 'HEAD',
    repo: string,
    path: string,
    opts: { accept?: string; signal?: AbortSignal | undefined },
  ): Promise<UpstreamReply> {
    if (this.hosts.length === 1) return this.sendHere(kind, method, repo, path, opts);
    const order = this.health.order();
    for (let n = 0; ; n++) {
      const i = order[n] as number;
      const host = this.hosts[i] as UpstreamClient;
      const last = n === order.length - 1;
      const next = last ? undefined : (this.hosts[order[n + 1] as number] as UpstreamClient);
      let reason: string;
      try {
        const reply = await host.sendHere(kind, method, repo, path, opts);
        if (!isFailoverStatus(reply.status)) {
          if (this.health.succeeded(i) && i === 0)
            this.log?.info({ namespace: this.namespace, host: host.config.host }, 'upstream primary host answers again');
          return reply;
        }
        this.health.failed(i);
        if (!next) return reply;
        await discard(reply.body);
        reason = `status ${reply.status}`;
      } catch (e) {
        // A client that went away aborted the request: nothing to learn about the host.
        if (opts.signal?.aborted || !isFailoverError(e)) throw e;
        this.health.failed(i);
        if (!next) throw e;
        reason = (e as OciError).code;
      }
      this.observer?.onFailover?.(this.namespace, host.config.host, next.config.host);
      this.log?.warn(
        { namespace: this.namespace, from: host.config.host, to: next.config.host, reason },
        'upstream host failed; trying the next one',
      );
    }
  }

  /** One logical request to this client's own host: adds auth, answers one 401 challenge, follows redirects. */
  private async sendHere(
    kind: string,
    method: 'GET' | 'HEAD',
    repo: string,
    path: string,
    opts: { accept?: string; signal?: AbortSignal | undefined },
  ): Promise<UpstreamReply> {
    const started = performance.now();
    this.active++;
    try {
      const scope = `repository:${repo}:pull`;
      const attempt = async (): Promise<UpstreamReply> => {
        const context: SendContext = { withheldFrom: undefined };
        const sent = await this.authorization(scope);
        let reply = await this.exchange(method, new URL(path, this.base), opts, sent);
        if (reply.status === 401) {
          const retried = await this.answerChallenge(reply, scope, sent, context);
          if (retried !== undefined) reply = await this.exchange(method, new URL(path, this.base), opts, retried);
        }
        return { ...reply, withheldFrom: context.withheldFrom };
      };
      // Helper credentials cached before this request may have expired or been rotated early: when the
      // upstream (or its token endpoint) rejects them, ask the helper again and retry once.
      const cachedHelperCreds = this.helper?.current();
      let reply: UpstreamReply | undefined;
      try {
        reply = await attempt();
      } catch (e) {
        if (!cachedHelperCreds || !isCredentialRejection(e)) throw e;
      }
      if (reply === undefined || (cachedHelperCreds && reply.status === 401)) {
        if (reply) await discard(reply.body);
        this.helper?.invalidate(cachedHelperCreds);
        this.tokens.invalidate(this.tokenPrefix + scope);
        reply = await attempt();
      }
      this.observer?.onResponse(this.namespace, kind, reply.status, (performance.now() - started) / 1000, this.config.host);
      return reply;
    } catch (e) {
      const err = transportError(this.namespace, e);
      this.observer?.onError(this.namespace, kind, err.code, this.config.host, err);
      throw err;
    } finally {
      if (--this.active === 0) for (const wake of this.idleWaiters.splice(0)) wake();
    }
  }

  /**
   * Resolves when no request of this client is being sent. Bodies it returned may still be streaming:
   * closing the agent then (Agent.close) lets them finish.
   */
  idle(): Promise<void> {
    if (this.hosts.length > 1) return Promise.all(this.hosts.map((h) => h.idleHere())).then(() => undefined);
    return this.idleHere();
  }

  private idleHere(): Promise<void> {
    if (this.active === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** A request plus its redirects; Authorization never follows to another origin. */
  private async exchange(
    method: 'GET' | 'HEAD',
    url: URL,
    opts: { accept?: string; signal?: AbortSignal | undefined },
    authorization: string | undefined,
  ): Promise<UpstreamReply> {
    const origin = url.origin;
    let current = url;
    for (let hop = 0; ; hop++) {
      const headers: Record<string, string> = { 'user-agent': this.userAgent };
      if (opts.accept) headers['accept'] = opts.accept;
      if (authorization && current.origin === origin) headers['authorization'] = authorization;
      const res = await undici().request(current, { method, headers, dispatcher: this.dispatcher, signal: opts.signal });
      const location = header(res.headers, 'location');
      if (res.statusCode >= 300 && res.statusCode < 400 && res.statusCode !== 304 && location) {
        await discard(res.body);
        if (hop >= MAX_REDIRECTS)
          throw new OciError('UPSTREAM_ERROR', 'too many upstream redirects', { detail: { namespace: this.namespace } });
        const next = new URL(location, current);
        if (next.protocol !== 'https:' && next.protocol !== 'http:') {
          throw new OciError('UPSTREAM_ERROR', 'upstream redirected to an unsupported scheme', { detail: { namespace: this.namespace } });
        }
        current = next;
        continue;
      }
      return { status: res.statusCode, headers: res.headers, body: res.body };
    }
  }

  private async authorization(scope: string): Promise<string | undefined> {
    if (this.auth.scheme === 'basic') return this.basic();
    if (this.auth.scheme === 'bearer') {
      const token = this.tokens.get(this.tokenPrefix + scope);
      return token ? `Bearer ${token}` : undefined;
    }
    return undefined;
  }

  /** Returns the Authorization to retry with, or undefined when the challenge cannot be answered. */
  private async answerChallenge(
    reply: UpstreamReply,
    scope: string,
    sent: string | undefined,
    context: SendContext,
  ): Promise<string | undefined> {
    const challenge = parseChallenge(header(reply.headers, 'www-authenticate'));
    if (!challenge) return undefined;
    if (challenge.scheme === 'basic') {
      // Basic credentials this request already carried were refused; a concurrent first request that went
      // out without them (before the scheme was known) still answers the challenge.
      if (sent?.startsWith('Basic ')) return undefined;
      const basic = await this.basic();
      if (!basic) return undefined;
      await discard(reply.body);
      this.auth.scheme = 'basic';
      return basic;
    }
    if (challenge.scheme !== 'bearer' || !challenge.params['realm']) return undefined;
    await discard(reply.body);
    this.auth.scheme = 'bearer';
    // A request sent before a concurrent one obtained a token: retry with that token rather than
    // discarding it. Only a token that was itself refused is dropped and fetched again.
    const key = this.tokenPrefix + scope;
    const cached = this.tokens.get(key);
    if (cached !== undefined && sent !== `Bearer ${cached}`) return `Bearer ${cached}`;
    this.tokens.invalidate(key);
    const realm = challenge.params['realm'];
    const service = challenge.params['service'];
    const wanted = challenge.params['scope'] ?? scope;
    const url = this.realmUrl(realm);
    if (this.hasCredentials && !mayReceiveCredentials(this.config, url)) context.withheldFrom = url.host;
    const token = await this.tokens.getOrFetch(key, () => this.fetchToken(url, service, wanted));
    return `Bearer ${token}`;
  }

  private realmUrl(realm: string): URL {
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new OciError('UPSTREAM_ERROR', 'token realm is not a URL', { detail: { namespace: this.namespace } });
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw new OciError('UPSTREAM_ERROR', 'token realm has an unsupported scheme', { detail: { namespace: this.namespace } });
    }
    return url;
  }

  private async fetchToken(realm: URL, service: string | undefined, scope: string): Promise<Token> {
    const url = new URL(realm);
    const headers: Record<string, string> = { 'user-agent': this.userAgent };
    // A realm on a host not allowed for this upstream gets an anonymous token request.
    const withheld = !mayReceiveCredentials(this.config, url);
    const creds = withheld ? undefined : await this.credentials();
    let res: Dispatcher.ResponseData;
    if (creds?.identityToken) {
      // An identity token is an OAuth2 refresh token: exchange it with the refresh-token grant (POST).
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: creds.secret, client_id: 'oci-registry', scope });
      if (service) form.set('service', service);
      headers['content-type'] = 'application/x-www-form-urlencoded';
      res = await undici().request(url, { method: 'POST', headers, body: form.toString(), dispatcher: this.dispatcher });
    } else {
      if (service) url.searchParams.set('service', service);
      url.searchParams.set('scope', scope);
      if (creds) headers['authorization'] = basicHeader(creds);
      res = await undici().request(url, { method: 'GET', headers, dispatcher: this.dispatcher });
    }
    if (res.statusCode !== 200) {
      await discard(res.body);
      const err = statusError(
        this.namespace,
        res.statusCode === 404 ? 502 : res.statusCode,
        'NAME_UNKNOWN',
        header(res.headers, 'retry-after'),
      );
      throw this.withheldHint(err, withheld && this.hasCredentials ? url.host : undefined);
    }
    const doc = this.parseObject(await this.readBody(res.body, MAX_TOKEN_BODY, 'token response'), 'token response');
    const value =
      typeof doc['token'] === 'string' && doc['token'] ? doc['token'] : typeof doc['access_token'] === 'string' ? doc['access_token'] : '';
    if (!value) throw new OciError('UPSTREAM_ERROR', 'token endpoint answered without a token', { detail: { namespace: this.namespace } });
    if (value.length > MAX_TOKEN_LENGTH || !TOKEN_CHARS.test(value)) {
      throw new OciError('UPSTREAM_ERROR', 'token endpoint answered with a malformed token', { detail: { namespace: this.namespace } });
    }
    const expiresIn = typeof doc['expires_in'] === 'number' && doc['expires_in'] > 0 ? doc['expires_in'] : 60;
    // Renew a little early so a token never expires between our check and the upstream's.
    const margin = Math.min(10, expiresIn / 4);
    return { value, expiresAt: Date.now() + (expiresIn - margin) * 1000 };
  }

  /** Whether the upstream has credentials to send at all (a helper, or username and password). */
  private get hasCredentials(): boolean {
    return this.helper !== undefined || (this.config.username !== undefined && this.config.password !== undefined);
  }

  /** The upstream's credentials: from the credential helper when one is configured, else from the config. */
  private async credentials(): Promise<HelperCredentials | undefined> {
    if (this.helper) return this.helper.get();
    const { username, password } = this.config;
    if (username === undefined || password === undefined) return undefined;
    return { username, secret: password, identityToken: false };
  }

  private async basic(): Promise<string | undefined> {
    const creds = await this.credentials();
    if (!creds) return undefined;
    if (creds.identityToken) {
      throw new CredentialHelperError(
        'DENIED',
        `credential helper ${this.helper?.program ?? ''} returned an identity token, which only answers Bearer token challenges, but the upstream asks for Basic auth`,
        {
          detail: { namespace: this.namespace },
        },
      );
    }
    return basicHeader(creds);
  }
}

function basicHeader(creds: HelperCredentials): string {
  return `Basic ${Buffer.from(`${creds.username}:${creds.secret}`).toString('base64')}`;
}

/** The token endpoint refused the credentials (not: the helper itself failed). */
function isCredentialRejection(e: unknown): boolean {
  return e instanceof OciError && e.code === 'DENIED' && !(e instanceof CredentialHelperError);
}

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}
