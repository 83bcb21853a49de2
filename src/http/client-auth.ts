import type { MirrorConfig } from '../config/types.js';
import type { HtpasswdVerifier } from '../auth/htpasswd.js';
import { OciError } from '../oci/errors.js';

export const CLIENT_AUTH_REALM = 'oci-registry';

/** A 401 that docker, containerd and skopeo answer with the credentials they have for this mirror. */
export function unauthorized(namespace?: string): OciError {
  return new OciError('UNAUTHORIZED', 'authentication required', {
    ...(namespace ? { detail: { namespace } } : {}),
    headers: { 'www-authenticate': `Basic realm="${CLIENT_AUTH_REALM}"` },
  });
}

/** Per-namespace client authentication: namespaces with `client_auth` require valid htpasswd credentials. */
export class ClientAuth {
  private readonly files: string[];

  constructor(
    config: MirrorConfig,
    private readonly verifier: HtpasswdVerifier,
  ) {
    this.files = [...new Set([...config.upstreams.values()].flatMap((u) => (u.clientAuthFile ? [u.clientAuthFile] : [])))];
  }

  /**
   * Throws UNAUTHORIZED unless the request may read this namespace; TOOMANYREQUESTS when `client` (the
   * request's address) has failed too many logins lately (HtpasswdVerifier).
   */
  async check(file: string | undefined, namespace: string, authorization: string | undefined, client: string): Promise<void> {
    if (!file) return;
    if (!(await this.verifier.verify(file, authorization, client))) throw unauthorized(namespace);
  }

  /**
   * `GET /v2/`: clients learn here whether to send credentials. When any namespace is protected, a request
   * without valid credentials for some protected namespace gets the challenge; public namespaces still
   * serve anonymous pulls.
   */
  async checkBase(authorization: string | undefined, client: string): Promise<void> {
    if (this.files.length === 0) return;
    for (const file of this.files) {
      if (await this.verifier.verify(file, authorization, client)) return;
    }
    throw unauthorized();
  }
}
