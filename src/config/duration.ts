const UNIT_SECONDS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

/**
 * Parses durations like `0s`, `90m`, `14d`, also compound `1h30m`. Returns milliseconds,
 * or undefined when the text is not a duration.
 */
export function parseDuration(text: string): number | undefined {
  const input = text.trim();
  if (input.length === 0) return undefined;
  let rest = input;
  let total = 0;
  while (rest.length > 0) {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/.exec(rest);
    if (!m) return undefined;
    total += Number(m[1]) * (UNIT_SECONDS[m[2] as string] as number) * 1000;
    rest = rest.slice(m[0].length);
  }
  return Math.round(total);
}

export function isDuration(text: string): boolean {
  return parseDuration(text) !== undefined;
}

export function formatDuration(ms: number): string {
  if (ms % 86_400_000 === 0 && ms > 0) return `${ms / 86_400_000}d`;
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000}m`;
  return `${ms / 1000}s`;
}
