import { errorText } from '../../../error-text.js';
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import tar from 'tar-stream';
import { isGzip } from '../archive-entries.js';
import { ImportError } from './import-error.js';

/** One entry of the tar stream: its header, and its bytes to iterate (or drain) before the next entry. */
export type TarEntry = AsyncIterable<unknown> & { header: tar.Header };

/**
 * Streams a tar file, gzip-compressed as a whole or not, entry by entry into `take`. An unreadable or
 * empty archive is an ImportError; an ImportError thrown by `take` passes through as is.
 */
export async function readTar(file: string, take: (entry: TarEntry) => Promise<void>): Promise<void> {
  const head = Buffer.alloc(2);
  const fh = await open(file, 'r').catch((e: unknown) => {
    throw new ImportError(`cannot open ${file}: ${errorText(e)}`);
  });
  try {
    await fh.read(head, 0, 2, 0);
  } finally {
    await fh.close();
  }
  const source = createReadStream(file, { highWaterMark: 1024 * 1024 });
  const extract = tar.extract();
  const piping = isGzip(head) ? pipeline(source, createGunzip(), extract) : pipeline(source, extract);
  // Awaited below; a failure here also surfaces through the entry iterator.
  piping.catch(() => undefined);
  let entries = 0;
  try {
    for await (const entry of extract) {
      entries++;
      await take(entry);
    }
    await piping;
  } catch (e) {
    source.destroy();
    if (e instanceof ImportError) throw e;
    throw new ImportError(`${file}: not a readable tar archive (${errorText(e)})`, { cause: e });
  }
  if (entries === 0) throw new ImportError(`${file}: empty archive`);
}
