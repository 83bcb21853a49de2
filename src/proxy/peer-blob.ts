import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { ResolvedRepository } from '../resolve/resolver.js';
import { ownerAnswer, type PeerRouting, type RequestOrigin } from './peer-routing.js';

/** A blob body the owner replica is sending: unverified until the download has hashed all of it. */
export interface OwnerBody {
  size: number | undefined;
  body: Readable;
}

/**
 * Asks the owner replica for a blob. The body when it answered 200 (the caller's download verifies it);
 * throws the OCI error the owner answered for the client (the blob is unknown there, its upstream
 * failed); undefined when the owner could not answer (down, refused, timed out, a server error): the
 * caller downloads from its upstream as if alone. Nothing of the blob reached a client in either case.
 */
export async function askOwnerForBlob(
  peers: PeerRouting,
  peer: string,
  repo: ResolvedRepository,
  digest: string,
  origin: RequestOrigin | undefined,
  log: Logger,
): Promise<OwnerBody | undefined> {
  const answer = await peers.cluster.client.fetchBlob({
    peer,
    namespace: repo.namespace,
    repository: repo.repository,
    digest,
    authorization: origin?.authorization,
  });
  if (answer.ok) {
    // The owner names the blob it sends; another digest is a broken peer, not worth a byte.
    if (answer.digest !== undefined && answer.digest !== digest) {
      answer.body.destroy();
      peers.cluster.peerFailed(peer, 'blob', 'digest_mismatch');
      log.warn({ peer, digest, announced: answer.digest }, 'owner replica announced another digest; downloading the blob here');
      return undefined;
    }
    // Headers alone are no promise: an owner that dies before its first byte is skipped like one that refused.
    if (!(await firstBytes(answer.body))) {
      answer.body.destroy();
      log.warn({ peer, digest }, 'owner replica failed before sending the blob; downloading it here');
      return undefined;
    }
    return { size: answer.size, body: answer.body };
  }
  const forClient = ownerAnswer(answer, repo.namespace);
  if (forClient) throw forClient;
  log.warn(
    { peer, digest, namespace: repo.namespace, code: answer.code, err: answer.message },
    'owner replica failed; downloading the blob here',
  );
  return undefined;
}

/**
 * Resolves true once the body has bytes to read (or ends: an empty body is the download's to judge),
 * false when it fails first. Reads nothing: the download consumes the body from its start.
 */
function firstBytes(body: Readable): Promise<boolean> {
  if (body.readableLength > 0 || body.readableEnded) return Promise.resolve(true);
  if (body.errored || body.destroyed) return Promise.resolve(false);
  return new Promise((resolve) => {
    const settle = (ok: boolean): void => {
      body.off('readable', onReadable);
      body.off('error', onError);
      body.off('close', onClose);
      resolve(ok);
    };
    const onReadable = (): void => settle(true);
    const onError = (): void => settle(false);
    const onClose = (): void => settle(body.readableEnded);
    body.on('readable', onReadable);
    body.on('error', onError);
    body.on('close', onClose);
  });
}
