/**
 * A minimal Docker token server (the `realm` of `WWW-Authenticate: Bearer ...`), so that an upstream
 * docker-registry can run with `auth: token` like Docker Hub does. It grants whatever pull scope is
 * asked for, to anyone. Tokens are RS256 JWTs with the signing certificate in `x5c`; distribution
 * checks that chain against `rootcertbundle` (the same self-signed certificate).
 */
import { createPrivateKey, randomUUID, sign, X509Certificate } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from './util.js';

export interface TokenServer {
  realm: string;
  service: string;
  issuer: string;
  certFile: string;
  issued(): number;
  close(): Promise<void>;
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

export async function startTokenServer(dir: string): Promise<TokenServer> {
  const keyFile = join(dir, 'token.key');
  const certFile = join(dir, 'token.crt');
  const r = await run(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      keyFile,
      '-out',
      certFile,
      '-days',
      '2',
      '-subj',
      '/CN=bench-token-issuer',
    ],
    {
      timeoutMs: 30_000,
    },
  );
  if (r.code !== 0) throw new Error(`openssl req failed: ${r.stderr}`);
  const key = createPrivateKey(await readFile(keyFile));
  const certDer = new X509Certificate(await readFile(certFile)).raw;
  const service = 'bench-upstream';
  const issuer = 'bench-token-issuer';
  let issued = 0;

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname !== '/token') {
      res.writeHead(404).end();
      return;
    }
    const access: Array<{ type: string; name: string; actions: string[] }> = [];
    for (const scope of url.searchParams.getAll('scope').flatMap((s) => s.split(' '))) {
      const m = /^repository:(.+):([a-z,*]+)$/.exec(scope);
      if (m) access.push({ type: 'repository', name: m[1]!, actions: m[2]!.split(',').filter((a) => a === 'pull') });
    }
    const now = Math.floor(Date.now() / 1000);
    const header = { alg: 'RS256', typ: 'JWT', x5c: [certDer.toString('base64')] };
    const claims = { iss: issuer, sub: 'bench', aud: service, exp: now + 3600, nbf: now - 10, iat: now, jti: randomUUID(), access };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const token = `${input}.${b64url(sign('sha256', Buffer.from(input), key))}`;
    issued++;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token, access_token: token, expires_in: 3600, issued_at: new Date(now * 1000).toISOString() }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    certFile,
    issued: () => issued,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
