/**
 * A tiny authoritative DNS server on 127.0.0.1 (UDP) for cluster tests: it answers A queries for the
 * names it holds with their current addresses (TTL 0), AAAA queries with no records, and anything else
 * with NXDOMAIN. Mirror processes use it through dnsPreloadEnv(): a module loaded with --import points
 * Node's default resolver at it, so `--peers dns+http://NAME:PORT` resolves here.
 */
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

export interface TestDns {
  /** `127.0.0.1:PORT` */
  server: string;
  /** Sets (or, with an empty list, empties) the A records of a name; the next query sees them. */
  set(name: string, addresses: readonly string[]): void;
  /** Queries answered so far, per name. */
  queries(name: string): number;
  close(): Promise<void>;
}

export async function startTestDns(): Promise<TestDns> {
  const records = new Map<string, readonly string[]>();
  const counts = new Map<string, number>();
  const socket: Socket = createSocket('udp4');
  socket.on('message', (msg: Buffer, rinfo: RemoteInfo) => {
    const reply = answer(msg, records, counts);
    if (reply) socket.send(reply, rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', r));
  return {
    server: `127.0.0.1:${socket.address().port}`,
    set: (name, addresses) => records.set(name.toLowerCase(), [...addresses]),
    queries: (name) => counts.get(name.toLowerCase()) ?? 0,
    close: () => new Promise<void>((r) => socket.close(() => r())),
  };
}

function answer(msg: Buffer, records: Map<string, readonly string[]>, counts: Map<string, number>): Buffer | undefined {
  if (msg.length < 12) return undefined;
  let offset = 12;
  const labels: string[] = [];
  while (offset < msg.length) {
    const len = msg[offset] as number;
    offset++;
    if (len === 0) break;
    labels.push(msg.toString('latin1', offset, offset + len));
    offset += len;
  }
  if (offset + 4 > msg.length) return undefined;
  const qtype = msg.readUInt16BE(offset);
  const question = msg.subarray(12, offset + 4);
  const name = labels.join('.').toLowerCase();
  counts.set(name, (counts.get(name) ?? 0) + 1);
  const known = records.get(name);
  const addresses = known !== undefined && qtype === 1 ? known : [];
  const header = Buffer.alloc(12);
  header.writeUInt16BE(msg.readUInt16BE(0), 0);
  // QR, AA, RD copied, RA; rcode 3 (NXDOMAIN) for names we do not hold.
  header.writeUInt16BE(0x8400 | (msg.readUInt16BE(2) & 0x0100) | 0x0080 | (known === undefined ? 3 : 0), 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(addresses.length, 6);
  const answers = addresses.map((a) => {
    const rr = Buffer.alloc(16);
    rr.writeUInt16BE(0xc00c, 0); // the name: a pointer to the question's
    rr.writeUInt16BE(1, 2); // A
    rr.writeUInt16BE(1, 4); // IN
    rr.writeUInt32BE(0, 6); // TTL 0: every lookup comes back here
    rr.writeUInt16BE(4, 10);
    a.split('.').forEach((octet, i) => rr.writeUInt8(Number(octet), 12 + i));
    return rr;
  });
  return Buffer.concat([header, question, ...answers]);
}

/**
 * The environment that makes a mirror process resolve through `dns`: NODE_OPTIONS loads a module
 * (written into `dir`) that sets Node's default resolver's servers before the mirror starts.
 */
export async function dnsPreloadEnv(dns: TestDns, dir: string): Promise<Record<string, string>> {
  const file = join(dir, 'test-dns-preload.mjs');
  await writeFile(
    file,
    [
      "import dns from 'node:dns';",
      'const servers = [process.env.OCI_TEST_DNS_SERVER];',
      'dns.setServers(servers);',
      'dns.promises.setServers(servers);',
      '',
    ].join('\n'),
  );
  return { NODE_OPTIONS: `--import=${pathToFileURL(file).href}`, OCI_TEST_DNS_SERVER: dns.server };
}
