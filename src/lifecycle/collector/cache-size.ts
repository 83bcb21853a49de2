import { statfs } from 'node:fs/promises';

/** `--max-cache-size`: a byte count, or (filesystem only) a share of the filesystem holding the cache. */
export type CacheSizeLimit = { kind: 'bytes'; bytes: number } | { kind: 'percent'; percent: number };

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1000 ** 4,
  tib: 1024 ** 4,
};

/**
 * Parses `50GiB`, `500MiB`, `10GB` (decimal), `2T` (binary), `1048576` (bytes) or `80%`.
 * Undefined when the text is none of these, or is zero.
 */
export function parseCacheSize(text: string): CacheSizeLimit | undefined {
  const input = text.trim();
  const percent = parsePercent(input, true);
  if (percent !== undefined) return { kind: 'percent', percent };
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(input);
  if (!m) return undefined;
  const unit = UNITS[(m[2] ?? '').toLowerCase()];
  if (unit === undefined) return undefined;
  const bytes = Math.floor(Number(m[1]) * unit);
  return bytes > 0 && Number.isSafeInteger(bytes) ? { kind: 'bytes', bytes } : undefined;
}

/** `90` or `90%`: a percentage in (0, 100]. With `requireSign`, only the `%` form. */
export function parsePercent(text: string, requireSign = false): number | undefined {
  const m = (requireSign ? /^(\d+(?:\.\d+)?)%$/ : /^(\d+(?:\.\d+)?)%?$/).exec(text.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  return n > 0 && n <= 100 ? n : undefined;
}

/** The limit in bytes now; a percentage needs the cache root (the filesystem's size may change). */
export async function resolveCacheSize(limit: CacheSizeLimit, filesystemRoot: string | undefined): Promise<number> {
  if (limit.kind === 'bytes') return limit.bytes;
  if (!filesystemRoot) throw new Error('a cache size in percent needs the filesystem backend');
  const fs = await statfs(filesystemRoot);
  return Math.floor((fs.blocks * fs.bsize * limit.percent) / 100);
}
