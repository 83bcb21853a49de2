import { OciError } from '../../src/oci/errors.js';

/** A body read to the end (small test bodies only). */
export async function readAll(body: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** The OciError a promise rejects with; anything else (or no rejection) fails the test. */
export async function rejection(p: Promise<unknown>): Promise<OciError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof OciError) return e;
    throw e;
  }
  throw new Error('expected a rejection');
}
