import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { readFileSync } from 'node:fs';
import { isIP, type LookupFunction } from 'node:net';
import { rootCertificates } from 'node:tls';
import type { Agent, buildConnector } from 'undici';
import type { UpstreamConfig } from '../config/types.js';
import { isLocalHostName, isPublicAddress } from './address-policy.js';
import { RefusedAddressError } from './errors.js';
import { undici } from './undici.js';

/**
 * One undici Agent (keep-alive pools per origin) for one upstream, with its TLS settings.
 * For upstreams nobody configured, every connection - including redirects and token realms - is
 * checked at connect time against the public-address policy, so DNS rebinding cannot slip past it.
 */
export function createUpstreamDispatcher(config: UpstreamConfig): Agent {
  const guard = !config.explicit;
  const tls = {
    rejectUnauthorized: !config.acceptInvalidCerts,
    ...(config.caFile ? { ca: [...rootCertificates, readFileSync(config.caFile, 'utf8')] } : {}),
    ...(config.clientCertFile ? { cert: readFileSync(config.clientCertFile) } : {}),
    ...(config.clientKeyFile ? { key: readFileSync(config.clientKeyFile) } : {}),
  };
  const lib = undici();
  const base = lib.buildConnector({
    ...tls,
    timeout: config.connectTimeoutMs,
    ...(guard ? { lookup: publicOnlyLookup } : {}),
  });
  const connect: buildConnector.connector = guard
    ? (opts, callback) => {
        const host = opts.hostname.replace(/^\[|\]$/g, '');
        if (isLocalHostName(host) || (isIP(host) !== 0 && !isPublicAddress(host))) {
          callback(new RefusedAddressError(host, 'not a public address'), null);
          return;
        }
        base(opts, callback);
      }
    : base;
  return new lib.Agent({
    connect,
    connections: 64,
    keepAliveTimeout: 30_000,
    headersTimeout: config.readTimeoutMs,
    bodyTimeout: config.readTimeoutMs,
  });
}

/**
 * A dns.lookup that fails when any resolved address is not public. A failed lookup is refused the same
 * way: to the client, a private internal name and a missing one must look alike.
 */
const publicOnlyLookup: LookupFunction = (hostname, options, callback) => {
  const refuse = (reason: string, dnsFailure: boolean): void =>
    callback(new RefusedAddressError(hostname, reason, dnsFailure) as unknown as NodeJS.ErrnoException, '', 0);
  dnsLookup(hostname, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
    if (err) return refuse(`DNS lookup failed: ${err.code ?? err.message}`, true);
    const refused = addresses.find((a) => !isPublicAddress(a.address));
    if (refused) return refuse(`resolves to non-public address ${refused.address}`, false);
    const first = addresses[0];
    if (!first) return refuse('DNS lookup returned no address', true);
    if (options.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, addresses);
    callback(null, first.address, first.family);
  });
};
