/**
 * How a replica names its peers: a base URL per replica (`http://10.0.0.5:8080`), or one DNS name whose
 * A/AAAA records are the replicas (`dns+http://mirror-peers.ns.svc.cluster.local:8080`).
 */
export type PeerSource =
  { kind: 'static'; urls: readonly string[] } | { kind: 'dns'; scheme: 'http' | 'https'; name: string; port: number };

/** Thrown for a value that names no peer; the CLI turns it into a ConfigError naming the flag. */
export class PeerAddressError extends Error {}

/**
 * The canonical form of a peer's base URL, `scheme://host:port` (lower case, port always written), so
 * that the list, the advertise URL and DNS answers compare as plain strings.
 */
export function canonicalPeerUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text.trim());
  } catch {
    throw new PeerAddressError(`not a URL: ${JSON.stringify(text)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new PeerAddressError(`expected http:// or https://, got ${JSON.stringify(text)}`);
  // Peers are replicas of this server, served at the root: a path, query or login would be ignored.
  if ((url.pathname !== '/' && url.pathname !== '') || url.search || url.hash || url.username || url.password) {
    throw new PeerAddressError(`expected a base URL (scheme, host and port only), got ${JSON.stringify(text)}`);
  }
  const port = url.port || (url.protocol === 'https:' ? '443' : '80');
  return `${url.protocol}//${url.hostname.toLowerCase()}:${port}`;
}

/** The base URL of a replica at an IP address (IPv6 in brackets). */
export function peerUrlFor(scheme: 'http' | 'https', address: string, port: number): string {
  const host = address.includes(':') ? `[${address}]` : address;
  // Through the URL parser: an IPv6 address compares in its one canonical spelling.
  return canonicalPeerUrl(`${scheme}://${host}:${port}`);
}

/** Parses `--peers`: a comma-separated list of base URLs, or one `dns+http://NAME:PORT`. */
export function parsePeerSource(text: string): PeerSource {
  const items = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (items.length === 0) throw new PeerAddressError('expected base URLs or dns+http://NAME:PORT, got nothing');
  const dns = items.filter((s) => /^dns\+/i.test(s));
  if (dns.length > 0) {
    if (items.length > 1) throw new PeerAddressError('dns+http://NAME:PORT names every peer: list nothing beside it');
    return parseDnsSource(dns[0] as string);
  }
  const urls = [...new Set(items.map(canonicalPeerUrl))];
  return { kind: 'static', urls };
}

function parseDnsSource(text: string): PeerSource {
  const match = /^dns\+(https?):\/\/([^/:?#]+):(\d{1,5})\/?$/i.exec(text);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port < 1 || port > 65535) throw new PeerAddressError(`expected dns+http://NAME:PORT, got ${JSON.stringify(text)}`);
  return { kind: 'dns', scheme: (match[1] as string).toLowerCase() as 'http' | 'https', name: (match[2] as string).toLowerCase(), port };
}
