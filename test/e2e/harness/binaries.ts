/**
 * Guards for tests that need external programs. A missing binary never counts as a pass: in CI
 * (`CI` set) the test fails loudly; elsewhere a loud `# MISSING BINARY` line is printed and the test is
 * skipped, which tap reports as a skip.
 */
import { accessSync, constants } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';

/** The Debian package that provides each binary the e2e tests use. */
export const BINARY_PACKAGES: Readonly<Record<string, string>> = {
  skopeo: 'skopeo',
  'docker-registry': 'docker-registry',
  htpasswd: 'apache2-utils',
  containerd: 'containerd',
  ctr: 'containerd',
  docker: 'docker.io',
  dockerd: 'docker.io',
  debootstrap: 'debootstrap',
  chromium: 'chromium',
};

/** The absolute path of an executable on PATH (or in the sbin directories), or undefined. */
export function findBinary(name: string): string | undefined {
  const candidates = isAbsolute(name)
    ? [name]
    : [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), '/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/bin'].map((dir) =>
        join(dir, name),
      );
  for (const path of candidates) {
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // next
    }
  }
  return undefined;
}

/** The loud line printed for a missing binary. */
export function missingBinaryMessage(name: string): string {
  const pkg = BINARY_PACKAGES[name.split('/').pop() ?? name] ?? name;
  return `MISSING BINARY ${name}: install it with apt-get install ${pkg}`;
}

/** Names of the binaries in `names` that are not installed. */
export function missingBinaries(names: readonly string[]): string[] {
  return names.filter((n) => findBinary(n) === undefined);
}

/**
 * The minimal slice of a tap Test this module uses, so that it works for the root `t` and subtests.
 */
export interface TapLike {
  fail(message: string): unknown;
  plan(n: number, comment?: string): void;
  comment(...args: unknown[]): void;
}

/**
 * True when `name` is installed. Otherwise: with `CI` set, fails `t` loudly; without, prints
 * `# MISSING BINARY <name>: install it with apt-get install <pkg>` and ends `t` as skipped (plan 0),
 * so call it before any assertion and return when it answers false:
 *
 *     if (!requireBinary(t, 'skopeo')) return;
 */
export function requireBinary(t: TapLike, name: string): boolean {
  if (findBinary(name) !== undefined) return true;
  const message = missingBinaryMessage(name);
  if (process.env.CI) {
    process.stderr.write(`# ${message} (CI is set: failing)\n`);
    t.fail(message);
    return false;
  }
  process.stderr.write(`# ${message}\n`);
  t.comment(message);
  t.plan(0, message);
  return false;
}

/** requireBinary for several names; stops at the first missing one. */
export function requireBinaries(t: TapLike, names: readonly string[]): boolean {
  for (const name of names) {
    if (!requireBinary(t, name)) return false;
  }
  return true;
}
