import { BlockList, isIP } from 'node:net';

/**
 * Addresses a client-chosen namespace must never make us dial: the mirror would otherwise be an
 * SSRF gadget into the cluster network (metadata services, node ports, sidecars).
 */
const blocked = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8], // "this" network
  ['10.0.0.0', 8], // private
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local, cloud metadata
  ['172.16.0.0', 12], // private
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.168.0.0', 16], // private
  ['198.18.0.0', 15], // benchmarking
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
] as const) {
  blocked.addSubnet(net, prefix, 'ipv4');
}
for (const [net, prefix] of [
  ['::', 128], // unspecified
  ['::1', 128], // loopback
  ['100::', 64], // discard-only
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated, still routed on some networks)
  ['ff00::', 8], // multicast
  ['64:ff9b:1::', 48], // local-use NAT64
] as const) {
  blocked.addSubnet(net, prefix, 'ipv6');
}

/** True when the address is routable on the public internet. */
export function isPublicAddress(address: string): boolean {
  const bare = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
  // A zone (fe80::1%eth0) only names the interface; the address decides.
  const ip = bare.includes('%') ? bare.slice(0, bare.indexOf('%')) : bare;
  const family = isIP(ip);
  if (family === 4) return !blocked.check(ip, 'ipv4');
  if (family !== 6) return false;
  const bytes = ipv6Bytes(ip);
  if (!bytes) return false;
  // IPv6 forms that carry an IPv4 address reach that address (through the kernel, NAT64 or a relay):
  // they are as public as the address they carry.
  if (embeddedIpv4(bytes).some((v4) => blocked.check(v4, 'ipv4'))) return false;
  return !blocked.check(ip, 'ipv6');
}

/**
 * The IPv4 addresses an IPv6 address embeds: IPv4-mapped ::ffff:0:0/96, IPv4-translated ::ffff:0:0:0/96,
 * IPv4-compatible ::/96, NAT64 64:ff9b::/96, 6to4 2002::/16 (bits 16-48), Teredo 2001::/32 (server in
 * bits 32-64, client inverted in bits 96-128).
 */
export function embeddedIpv4(b: Uint8Array): string[] {
  const v4 = (at: number, invert = false): string => Array.from(b.subarray(at, at + 4), (x) => (invert ? x ^ 0xff : x)).join('.');
  const zero = (from: number, to: number): boolean => b.subarray(from, to).every((x) => x === 0);
  if (zero(0, 10) && b[10] === 0xff && b[11] === 0xff) return [v4(12)];
  if (zero(0, 8) && b[8] === 0xff && b[9] === 0xff && zero(10, 12)) return [v4(12)];
  if (zero(0, 12)) return [v4(12)];
  if (b[0] === 0x00 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && zero(4, 12)) return [v4(12)];
  if (b[0] === 0x20 && b[1] === 0x02) return [v4(2)];
  if (b[0] === 0x20 && b[1] === 0x01 && b[2] === 0x00 && b[3] === 0x00) return [v4(4), v4(12, true)];
  return [];
}

/** The 16 bytes of an IPv6 address that isIP() accepted (`::` shorthand and a trailing dotted quad included). */
export function ipv6Bytes(ip: string): Uint8Array | undefined {
  let text = ip;
  const tail: number[] = [];
  const dotted = /^(.*:)(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const o = dotted.slice(2, 6).map(Number);
    if (o.some((n) => n > 255)) return undefined;
    tail.push(((o[0] as number) << 8) | (o[1] as number), ((o[2] as number) << 8) | (o[3] as number));
    text = `${dotted[1] as string}0`; // a placeholder group, replaced by the two groups below
  }
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const groups = (s: string | undefined): number[] | undefined => {
    if (!s) return [];
    const parts = s.split(':').map((p) => (/^[0-9a-f]{1,4}$/i.test(p) ? parseInt(p, 16) : NaN));
    return parts.some(Number.isNaN) ? undefined : parts;
  };
  const head = groups(halves[0]);
  const rest = groups(halves[1]);
  if (!head || !rest) return undefined;
  const missing = 8 - head.length - rest.length - (dotted ? 1 : 0);
  if (halves.length === 2 && missing < 1) return undefined;
  let all = halves.length === 2 ? [...head, ...new Array<number>(missing).fill(0), ...rest] : head;
  if (dotted) all = [...all.slice(0, -1), ...tail];
  if (all.length !== 8) return undefined;
  const bytes = new Uint8Array(16);
  all.forEach((g, i) => {
    bytes[2 * i] = g >> 8;
    bytes[2 * i + 1] = g & 0xff;
  });
  return bytes;
}

/** Host names that always mean this machine, whatever DNS says. */
export function isLocalHostName(host: string): boolean {
  const h = host.toLowerCase().replace(/\.$/, '');
  return h === 'localhost' || h.endsWith('.localhost') || h === 'localhost.localdomain';
}
