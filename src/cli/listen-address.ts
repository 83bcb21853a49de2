export interface ListenAddress {
  host: string;
  port: number;
}

/** Parses `HOST:PORT`, `[IPv6]:PORT` or `:PORT`; undefined when malformed. */
export function parseListenAddress(text: string): ListenAddress | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]*)):(\d{1,5})$/.exec(text.trim());
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}
