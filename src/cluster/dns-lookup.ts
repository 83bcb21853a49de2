import { promises as dns } from 'node:dns';

/** Resolves a name to the addresses of the replicas behind it. Tests pass their own. */
export type LookupAddresses = (name: string) => Promise<string[]>;

/** DNS answers that mean "no such records" (a headless Service without ready endpoints): an empty set, not a failure. */
const EMPTY_ANSWER = new Set(['ENODATA', 'ENOTFOUND', 'NODATA', 'NOTFOUND']);

async function records(query: Promise<string[]>): Promise<string[]> {
  try {
    return await query;
  } catch (e) {
    if (EMPTY_ANSWER.has((e as NodeJS.ErrnoException).code ?? '')) return [];
    throw e;
  }
}

/**
 * A and AAAA records straight from the DNS servers (not getaddrinfo: no hosts file, no libc cache, no
 * thread pool), so a scale-up or a restarted pod shows in the next round. Uses the process's default
 * resolver, whose servers dns.setServers() may change.
 */
export const lookupARecords: LookupAddresses = async (name) => {
  const [v4, v6] = await Promise.all([records(dns.resolve4(name)), records(dns.resolve6(name))]);
  return [...v4, ...v6];
};
