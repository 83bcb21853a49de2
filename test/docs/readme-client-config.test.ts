import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import {
  parseMirrorAddress,
  renderContainerdHostsToml,
  renderCrioRegistriesConf,
  renderDockerDaemonJson,
} from '../../src/cli/client-config.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const readme = readFileSync(join(root, 'README.md'), 'utf8');

/** The README's fenced blocks of one language, in order. */
function blocks(lang: string): string[] {
  return [...readme.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => (m[1] ?? '').trim());
}

t.test('the README shows the containerd hosts.toml that client-config writes', async (t) => {
  const toml = renderContainerdHostsToml('docker.io', { mirror: parseMirrorAddress('http://mirror.example:8080', false) } as Parameters<
    typeof renderContainerdHostsToml
  >[1]).trim();
  t.ok(blocks('toml').includes(toml), toml);
});

t.test('the README shows the registries.conf stanzas that client-config crio prints, with a port namespace', async (t) => {
  const conf = renderCrioRegistriesConf(['docker.io', 'registry.local:5000'], {
    mirror: parseMirrorAddress('mirror.example:8080', true),
  } as Parameters<typeof renderCrioRegistriesConf>[1]).trim();
  t.ok(blocks('toml').includes(conf), conf);
});

t.test('the README shows the daemon.json that client-config docker prints', async (t) => {
  const out = renderDockerDaemonJson(parseMirrorAddress('http://mirror.example:8080', false));
  const shown = blocks('json').map((b) => JSON.stringify(JSON.parse(b)));
  t.ok(shown.includes(JSON.stringify(JSON.parse(out))), out);
});
