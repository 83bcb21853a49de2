import type { Logger } from 'pino';
import type { LinkKind, RepositoryRef, Storage } from '../storage/storage.js';
import type { ProxyObserver } from './events.js';
import { Lru } from './lru.js';
import { errorText } from '../error-text.js';

/**
 * Links known in memory. An entry is a key of about 150 characters and a number: 50,000 of them are a
 * few MiB, enough for every layer of a few thousand images, so a warm pull finds its links here.
 */
const KNOWN_LINKS = 50_000;

export interface RepositoryLinksOptions {
  storage: Storage;
  log: Logger;
  observer?: ProxyObserver | undefined;
  now: () => number;
}

/**
 * Which repository may serve which digest. Content is stored once per digest; a repository serves it
 * only after its upstream showed it holds it (a download through it, or a HEAD there), recorded as a
 * link with its time. Known links stay in memory, so a warm request costs no storage I/O; new links
 * are written behind the response (a lost one costs one more HEAD upstream, never a wrong answer).
 */
export class RepositoryLinks {
  private readonly known = new Lru<number>(KNOWN_LINKS);
  /** The last storage write per link, so that a put and a delete of one link land in order. */
  private readonly writes = new Map<string, Promise<void>>();
  /** Unlinked keys whose first request is showing access right now (see prove). */
  private readonly proving = new Map<string, Promise<void>>();

  constructor(private readonly options: RepositoryLinksOptions) {}

  /** The link time (epoch ms) when memory knows the link; no I/O. */
  peek(repo: RepositoryRef, kind: LinkKind, digest: string): number | undefined {
    return this.known.get(linkKey(repo, kind, digest));
  }

  /** The link time (epoch ms), from memory or else storage; undefined when there is no link. */
  async get(repo: RepositoryRef, kind: LinkKind, digest: string): Promise<number | undefined> {
    const key = linkKey(repo, kind, digest);
    const hot = this.known.get(key);
    if (hot !== undefined) return hot;
    let at: Date | undefined;
    try {
      at = await this.options.storage.getLink(repo, kind, digest);
    } catch (e) {
      // Unknown is the safe side: the caller asks the upstream again.
      this.storageFailed('get_link', e);
      return undefined;
    }
    if (at === undefined) return undefined;
    // A drop may have run while the read did; the drop wins.
    if (this.writes.has(key) && this.known.get(key) === undefined) return undefined;
    this.known.set(key, at.getTime());
    return at.getTime();
  }

  /** Links the digest to the repository now: in memory at once, in storage behind the response. */
  record(repo: RepositoryRef, kind: LinkKind, digest: string): void {
    const key = linkKey(repo, kind, digest);
    const at = this.options.now();
    this.known.set(key, at);
    this.writeBehind(key, () => this.options.storage.putLink(repo, kind, digest, new Date(at)), 'put_link');
  }

  /** Links unless memory knows the link already (a re-validated tag: its manifest stays linked, no rewrite). */
  ensure(repo: RepositoryRef, kind: LinkKind, digest: string): void {
    if (this.peek(repo, kind, digest) === undefined) this.record(repo, kind, digest);
  }

  /** Removes the link (the upstream no longer has the digest for this repository); never the content. */
  drop(repo: RepositoryRef, kind: LinkKind, digest: string): void {
    const key = linkKey(repo, kind, digest);
    this.known.delete(key);
    this.writeBehind(key, () => this.options.storage.deleteLink(repo, kind, digest), 'delete_link');
  }

  /**
   * Lets one request at a time show access for an unlinked key: `lead` runs for the first. Requests that
   * arrive while it runs wait for it: when it succeeded they get `undefined` and proceed as linked; when it
   * failed they get its error, as followers of a download share its failure. `undefined` also when the
   * link appeared meanwhile. A burst of clients pulling a new image thus costs the upstream nothing more
   * than one client does.
   */
  async prove<T>(repo: RepositoryRef, kind: LinkKind, digest: string, lead: () => Promise<T>): Promise<T | undefined> {
    const key = linkKey(repo, kind, digest);
    const running = this.proving.get(key);
    if (running) {
      await running;
      return undefined;
    }
    // Linked while this request read storage (another request led and finished): nothing to show.
    if (this.known.get(key) !== undefined) return undefined;
    const work = lead();
    const done = work.then(() => undefined);
    done.catch(() => undefined); // followers see the failure; nobody else must
    this.proving.set(key, done);
    try {
      return await work;
    } finally {
      if (this.proving.get(key) === done) this.proving.delete(key);
    }
  }

  /** Waits for the link writes running behind responses (graceful shutdown, tests). */
  async drain(): Promise<void> {
    while (this.writes.size > 0) await Promise.all(this.writes.values());
  }

  private writeBehind(key: string, op: () => Promise<void>, operation: string): void {
    const previous = this.writes.get(key);
    const write: Promise<void> = (previous ?? Promise.resolve())
      .then(op)
      .catch((e: unknown) => this.storageFailed(operation, e))
      .finally(() => {
        if (this.writes.get(key) === write) this.writes.delete(key);
      });
    this.writes.set(key, write);
  }

  private storageFailed(operation: string, e: unknown): void {
    this.options.observer?.storageError?.(operation);
    this.options.log.warn({ operation, err: errorText(e) }, 'storage operation failed');
  }
}

function linkKey(repo: RepositoryRef, kind: LinkKind, digest: string): string {
  return `${kind}\0${repo.namespace}\0${repo.repository}\0${digest}`;
}
