export interface Challenge {
  scheme: 'bearer' | 'basic' | 'other';
  params: Record<string, string>;
}

/**
 * Parses the first challenge of a WWW-Authenticate header:
 * `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:x:pull"`.
 */
export function parseChallenge(header: string | undefined): Challenge | undefined {
  if (!header) return undefined;
  const m = /^\s*([A-Za-z][A-Za-z0-9_-]*)\s*(.*)$/s.exec(header);
  if (!m) return undefined;
  const name = (m[1] as string).toLowerCase();
  const scheme = name === 'bearer' ? 'bearer' : name === 'basic' ? 'basic' : 'other';
  const params: Record<string, string> = {};
  const re = /([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?\s*/gy;
  const rest = m[2] as string;
  let p: RegExpExecArray | null;
  while ((p = re.exec(rest)) !== null && p[0].length > 0) {
    params[(p[1] as string).toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : (p[3] ?? '');
  }
  return { scheme, params };
}
