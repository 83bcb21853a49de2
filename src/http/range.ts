import type { ByteRange } from '../storage/storage.js';

export type RangeResult = { kind: 'full' } | { kind: 'partial'; range: ByteRange } | { kind: 'unsatisfiable' };

/**
 * Interprets a Range header against a size. Only a single `bytes=` range is honoured; anything else
 * (several ranges, other units, bad syntax) is ignored and the whole body served, as RFC 9110 allows.
 * Positions are compared as BigInt: clients may send numbers beyond 2^53.
 */
export function parseRange(header: string | undefined, size: number): RangeResult {
  if (!header) return { kind: 'full' };
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m) return { kind: 'full' };
  const [, a = '', b = ''] = m;
  if (a === '' && b === '') return { kind: 'full' };
  const total = BigInt(size);
  if (a === '') {
    // Suffix range: the last N bytes.
    const n = BigInt(b);
    if (n === 0n || total === 0n) return { kind: 'unsatisfiable' };
    const start = n >= total ? 0n : total - n;
    return { kind: 'partial', range: { start: Number(start), end: size - 1 } };
  }
  const start = BigInt(a);
  // A last position below the first makes the header invalid: ignore it.
  if (b !== '' && BigInt(b) < start) return { kind: 'full' };
  if (start >= total) return { kind: 'unsatisfiable' };
  const last = b === '' ? total - 1n : BigInt(b) < total - 1n ? BigInt(b) : total - 1n;
  return { kind: 'partial', range: { start: Number(start), end: Number(last) } };
}
