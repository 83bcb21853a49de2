import type { FastifyReply, FastifyRequest } from 'fastify';
import { parseDigest } from '../../oci/digest.js';
import type { Mirror } from '../../proxy/mirror.js';
import type { ResolvedRepository } from '../../resolve/resolver.js';
import { parseRange } from '../range.js';
import { requestOrigin } from '../request-origin.js';
import { sendFilledBody } from '../send-filled-body.js';
import { canFillBuffers } from '../../storage/storage.js';
import type { Readable } from 'node:stream';

export async function serveBlob(
  mirror: Mirror,
  repo: ResolvedRepository,
  rawDigest: string,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const digest = parseDigest(rawDigest).value;
  reply.header('docker-content-digest', digest).header('accept-ranges', 'bytes').header('content-type', 'application/octet-stream');

  if (request.method === 'HEAD') {
    const head = await mirror.blobs.head(repo, digest);
    request.ctx.outcome = head.outcome;
    if (head.linked) request.ctx.linked = true;
    if (head.size !== undefined) reply.header('content-length', head.size);
    if (head.warning) reply.header('warning', head.warning);
    return reply.send();
  }

  const handle = await mirror.blobs.open(repo, digest, undefined, requestOrigin(request));
  request.ctx.outcome = handle.outcome;
  if (handle.linked) request.ctx.linked = true;
  if (handle.warning) reply.header('warning', handle.warning);
  if (handle.redirect) {
    handle.dispose();
    return reply.code(307).header('location', handle.redirect).header('content-length', 0).send();
  }
  const size = handle.size;
  const range = size !== undefined && handle.rangeable ? parseRange(request.headers.range, size) : ({ kind: 'full' } as const);
  if (range.kind === 'unsatisfiable') {
    handle.dispose();
    return reply
      .code(416)
      .header('content-range', `bytes */${size}`)
      .header('content-type', 'application/json')
      .send(JSON.stringify({ errors: [{ code: 'RANGE_INVALID', message: 'requested range not satisfiable', detail: { size } }] }));
  }
  if (range.kind === 'partial') {
    const { start, end } = range.range;
    const body = await handle.open(range.range);
    request.ctx.bytes = end - start + 1;
    reply
      .code(206)
      .header('content-range', `bytes ${start}-${end}/${size}`)
      .header('content-length', end - start + 1);
    return send(reply, body);
  }
  const body = await handle.open();
  if (size !== undefined) reply.header('content-length', size);
  request.ctx.bytes = size;
  return send(reply, body);
}

function send(reply: FastifyReply, body: Readable): FastifyReply | Promise<FastifyReply> {
  return canFillBuffers(body) ? sendFilledBody(reply, body) : reply.send(body);
}
