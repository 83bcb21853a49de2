/**
 * The machine's configured Debian mirror, read from APT's own configuration (/etc/apt/sources.list,
 * sources.list.d/*.list one-line entries and sources.list.d/*.sources deb822 paragraphs), so that
 * debootstrap fetches from wherever apt-get on this machine fetches.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface AptSource {
  /** Archive root, e.g. `http://deb.debian.org/debian`. */
  uri: string;
  suites: string[];
  components: string[];
  /** The Signed-By keyring file, when it names one that exists here (not an inline key). */
  keyring?: string;
}

function keyringPath(value: string | undefined): string | undefined {
  const v = value?.trim();
  return v && v.startsWith('/') && !v.includes('\n') && existsSync(v) ? v : undefined;
}

/** `deb [opt=v ...] URI SUITE COMPONENT...` lines; `deb-src`, comments and blank lines skipped. */
export function parseOneLineSources(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*$/, '').trim();
    const m = /^deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)$/.exec(line);
    if (!m) continue;
    const options = new Map(
      (m[1] ?? '')
        .split(/\s+/)
        .filter(Boolean)
        .map((o) => o.split('=', 2) as [string, string]),
    );
    const keyring = keyringPath(options.get('signed-by'));
    out.push({
      uri: m[2]!.replace(/\/+$/, ''),
      suites: [m[3]!],
      components: m[4]!.split(/\s+/).filter(Boolean),
      ...(keyring ? { keyring } : {}),
    });
  }
  return out;
}

/** deb822 paragraphs (`Types: deb`, `URIs:`, `Suites:`, `Components:`, `Signed-By:`, `Enabled:`). */
export function parseDeb822Sources(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const paragraph of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    let key: string | undefined;
    for (const line of paragraph.split('\n')) {
      if (line.startsWith('#')) continue;
      if (/^\s/.test(line) && key) {
        // A continuation line (e.g. an inline Signed-By key block).
        fields.set(key, `${fields.get(key) ?? ''}\n${line.trim()}`);
        continue;
      }
      const m = /^([A-Za-z-]+):\s*(.*)$/.exec(line);
      if (!m) continue;
      key = m[1]!.toLowerCase();
      fields.set(key, m[2]!.trim());
    }
    const list = (k: string): string[] => (fields.get(k) ?? '').split(/\s+/).filter(Boolean);
    if (!list('types').includes('deb') || fields.get('enabled')?.toLowerCase() === 'no') continue;
    const keyring = keyringPath(fields.get('signed-by'));
    for (const uri of list('uris')) {
      out.push({ uri: uri.replace(/\/+$/, ''), suites: list('suites'), components: list('components'), ...(keyring ? { keyring } : {}) });
    }
  }
  return out;
}

/** Every `deb` source configured under `etcApt` (default /etc/apt), in APT's file order. */
export function readAptSources(etcApt = '/etc/apt'): AptSource[] {
  const read = (path: string): string => {
    try {
      return readFileSync(path, 'utf8');
    } catch {
      return '';
    }
  };
  const out = parseOneLineSources(read(join(etcApt, 'sources.list')));
  let names: string[] = [];
  try {
    names = readdirSync(join(etcApt, 'sources.list.d')).sort();
  } catch {
    // no sources.list.d
  }
  for (const name of names) {
    const path = join(etcApt, 'sources.list.d', name);
    if (name.endsWith('.list')) out.push(...parseOneLineSources(read(path)));
    else if (name.endsWith('.sources')) out.push(...parseDeb822Sources(read(path)));
  }
  return out;
}

/** The first configured source that carries `suite` with the `main` component (what debootstrap needs). */
export function findSuiteSource(suite: string, sources: readonly AptSource[] = readAptSources()): AptSource | undefined {
  return sources.find((s) => s.suites.includes(suite) && s.components.includes('main') && /^(?:https?|file):/.test(s.uri));
}
