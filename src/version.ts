import { readFileSync } from 'node:fs';

/**
 * The program's version, read once from package.json so that a release bump changes it everywhere
 * (--version, the User-Agent sent upstream, the status page). package.json sits one directory above
 * this module both in src/ (tests, tsx) and in dist/ (the built program, the container image).
 */
export const VERSION = readVersion(new URL('../package.json', import.meta.url));

export function readVersion(packageJson: URL): string {
  const doc = JSON.parse(readFileSync(packageJson, 'utf8')) as { version?: unknown };
  if (typeof doc.version !== 'string' || doc.version.length === 0) throw new Error(`${packageJson.pathname}: no "version" string`);
  return doc.version;
}

/** What the mirror calls itself in requests to upstream registries, unless an upstream sets user_agent. */
export const DEFAULT_USER_AGENT = `oci-registry/${VERSION}`;
