import type { Readable } from 'node:stream';
import type { Agent, Dispatcher } from 'undici';
import { undici } from '../upstream/undici.js';
import { createDigester, tryParseDigest } from '../oci/digest.js';
import { UPSTREAM_MANIFEST_ACCEPT } from '../oci/media-types.js';
import { MAX_MANIFEST_BYTES } from '../oci/limits.js';
import type { ClusterObserver, PeerRequestKind } from './events.js';
import { HOP_HEADER } from './hop.js';
import type { PeerHealth } from './peer-health.js';

/** OCI error codes an owner answers with when its upstream failed: the peer itself is fine. */
const UPSTREAM_CODES = new Set(['UPSTREAM_ERROR', 'UPSTREAM_UNAVAILABLE', 'UPSTREAM_TIMEOUT', 'TOOMANYREQUESTS']);
/** Errors of a body the consumer destroyed itself (its client left): not the peer's fault. */
const CONSUMER_ABORTS = new Set(['UND_ERR_ABORTED', 'ABORT_ERR']);

export interface PeerRequest {
  /** The owner's base URL (a member of Membership). */
  peer: string;
  namespace: string;
  repository: string;
  /** The client's Authorization header, passed on unchanged: a forwarded request has the client's rights, no more. */
  authorization?: string | undefined;
  signal?: AbortSignal | undefined;
}

/** The owner answered with the blob; `body` is unverified: the caller hashes it as it streams. */
export interface PeerBlob {
  ok: true;
  size: number | undefined;
  /** The owner's Docker-Content-Digest, when sent. */
  digest: string | undefined;
  body: Readable;
}

/** The owner's manifest, its digest checked here against the bytes. */
export interface PeerManifest {
  ok: true;
  digest: string;
  mediaType: string;
  bytes: Buffer;
}

/**
 * Why a peer request gave no usable answer. `peerDown` says the peer was marked down (it refused, timed
 * out, broke the response or answered nonsense); otherwise the owner answered a definite HTTP error
 * (`status`, with its OCI error `code` when it sent one): 404 or 401 are the owner's answer to the client,
 * an UPSTREAM_* code means the owner's upstream failed.
 */
export interface PeerFailure {
  ok: false;
  peerDown: boolean;
  status: number | undefined;
  code: string;
  message: string;
}

export interface PeerClientOptions {
  health: PeerHealth;
  observer?: Pick<ClusterObserver, 'forwarded' | 'peerError'> | undefined;
  /** Default 1 s: peers are in the same cluster, a longer wait means the peer is gone. */
  connectTimeoutMs?: number | undefined;
  /** Until the response headers, and between body chunks. Default 60 s: the owner may be waiting for its upstream. */
  readTimeoutMs?: number | undefined;
}

/**
 * Fetches blobs and manifests from the replica that owns them, with ordinary OCI pull requests
 * (`GET /v2/<repository>/blobs/<digest>?ns=<namespace>`) marked with the hop header. Any transport
 * failure - refused, connect timeout, reset, a body cut short or stalled - marks the peer down in
 * PeerHealth; a success marks it up.
 */
export class PeerClient {
  private readonly agent: Agent;
  private readonly health: PeerHealth;
  private readonly observer: PeerClientOptions['observer'];

  constructor(options: PeerClientOptions) {
    this.health = options.health;
    this.observer = options.observer;
    const readTimeoutMs = options.readTimeoutMs ?? 60_000;
    this.agent = new (undici().Agent)({
      connect: { timeout: options.connectTimeoutMs ?? 1_000 },
      connections: 64,
      keepAliveTimeout: 30_000,
      headersTimeout: readTimeoutMs,
      bodyTimeout: readTimeoutMs,
    });
  }

  async fetchBlob(req: PeerRequest & { digest: string }): Promise<PeerBlob | PeerFailure> {
    const reply = await this.send('blob', req, `blobs/${req.digest}`, {});
    if (!('statusCode' in reply)) return reply;
    if (reply.statusCode !== 200) return this.statusFailure('blob', req.peer, reply);
    const length = reply.headers['content-length'];
    const size = typeof length === 'string' && /^\d+$/.test(length) ? Number(length) : undefined;
    const digest = reply.headers['docker-content-digest'];
    // A body that breaks or stalls marks the peer down; one the consumer destroyed (its client left) does not.
    reply.body.once('error', (e: NodeJS.ErrnoException) => {
      if (CONSUMER_ABORTS.has(e.code ?? '') || req.signal?.aborted) return;
      this.fail('blob', req.peer, e.code ?? 'body_error', e.message);
    });
    reply.body.once('end', () => this.health.markUp(req.peer));
    return { ok: true, size, digest: typeof digest === 'string' ? digest : undefined, body: reply.body };
  }

  async fetchManifest(req: PeerRequest & { reference: string }): Promise<PeerManifest | PeerFailure> {
    const reply = await this.send('manifest', req, `manifests/${req.reference}`, { accept: UPSTREAM_MANIFEST_ACCEPT });
    if (!('statusCode' in reply)) return reply;
    if (reply.statusCode !== 200) return this.statusFailure('manifest', req.peer, reply);
    let bytes: Buffer;
    try {
      bytes = await readCapped(reply.body, MAX_MANIFEST_BYTES);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      return this.fail('manifest', req.peer, err.code ?? 'body_error', err.message);
    }
    const mediaType = reply.headers['content-type'];
    const announced = tryParseDigest(String(reply.headers['docker-content-digest'] ?? ''));
    const requested = tryParseDigest(req.reference);
    const algorithm = requested?.algorithm ?? announced?.algorithm ?? 'sha256';
    const digest = `${algorithm}:${createDigester(algorithm).update(bytes).digest('hex')}`;
    // The owner computed the digest from the same bytes: a difference is a broken peer, never served.
    if (typeof mediaType !== 'string' || !announced || announced.value !== digest || (requested && requested.value !== digest)) {
      return this.fail('manifest', req.peer, 'digest_mismatch', 'peer manifest does not match its digest');
    }
    this.health.markUp(req.peer);
    return { ok: true, digest, mediaType, bytes };
  }

  /** Closes the keep-alive connections; running requests finish first. */
  close(): Promise<void> {
    return this.agent.close();
  }

  private async send(
    kind: PeerRequestKind,
    req: PeerRequest,
    tail: string,
    headers: Record<string, string>,
  ): Promise<Dispatcher.ResponseData | PeerFailure> {
    const url = `${req.peer}/v2/${req.repository}/${tail}?ns=${encodeURIComponent(req.namespace)}`;
    this.observer?.forwarded(kind);
    try {
      return await undici().request(url, {
        method: 'GET',
        dispatcher: this.agent,
        headers: { ...headers, [HOP_HEADER]: '1', ...(req.authorization !== undefined ? { authorization: req.authorization } : {}) },
        ...(req.signal ? { signal: req.signal } : {}),
      });
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      // Our own abort (the client left) says nothing about the peer.
      if (req.signal?.aborted) return { ok: false, peerDown: false, status: undefined, code: 'aborted', message: err.message };
      return this.fail(kind, req.peer, err.code ?? 'error', err.message);
    }
  }

  private async statusFailure(kind: PeerRequestKind, peer: string, reply: Dispatcher.ResponseData): Promise<PeerFailure> {
    const status = reply.statusCode;
    let code: string | undefined;
    let message = `peer answered ${status}`;
    try {
      const doc = JSON.parse((await readCapped(reply.body, 64 * 1024)).toString('utf8')) as {
        errors?: Array<{ code?: unknown; message?: unknown }>;
      };
      const first = doc.errors?.[0];
      if (typeof first?.code === 'string') code = first.code;
      if (typeof first?.message === 'string') message = first.message;
    } catch {
      // not an OCI error body
    }
    // A 4xx is the owner's answer for the client; an UPSTREAM_* 5xx is its upstream's failure. Anything
    // else (500, a bare 502 from something in between, an unparseable error) is the peer failing.
    if (status < 500 || (code !== undefined && UPSTREAM_CODES.has(code))) {
      this.health.markUp(peer);
      return { ok: false, peerDown: false, status, code: code ?? `status_${status}`, message };
    }
    return { ...this.fail(kind, peer, `status_${status}`, message), status };
  }

  private fail(kind: PeerRequestKind, peer: string, code: string, message: string): PeerFailure {
    this.health.markDown(peer, code);
    this.observer?.peerError(kind, code);
    return { ok: false, peerDown: true, status: undefined, code, message };
  }
}

async function readCapped(body: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const b = chunk as Buffer;
    size += b.length;
    if (size > limit) {
      body.destroy();
      throw Object.assign(new Error(`peer body exceeds ${limit} bytes`), { code: 'too_large' });
    }
    chunks.push(b);
  }
  return Buffer.concat(chunks, size);
}
