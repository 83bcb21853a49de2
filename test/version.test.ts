import t from 'tap';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import ts from 'typescript';
import { readVersion, VERSION } from '../src/version.js';

const root = new URL('../', import.meta.url);

t.test('VERSION is the version in package.json', async (t) => {
  const pkg = JSON.parse(await readFile(new URL('package.json', root), 'utf8')) as { version: string };
  t.equal(VERSION, pkg.version);
});

t.test('built into dist/, the module reads the package.json beside dist/, wherever the process runs', async (t) => {
  // The same layout as the build (rootDir src, outDir dist): <pkg>/dist/version.js, <pkg>/package.json.
  const dir = await mkdtemp(join(tmpdir(), 'version-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const source = await readFile(new URL('src/version.ts', root), 'utf8');
  const js = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022 } }).outputText;
  await mkdir(join(dir, 'dist'));
  await writeFile(join(dir, 'dist', 'version.js'), js);
  await writeFile(join(dir, 'package.json'), JSON.stringify({ type: 'module', version: '9.8.7' }));
  const built = (await import(pathToFileURL(join(dir, 'dist', 'version.js')).href)) as { VERSION: string; DEFAULT_USER_AGENT: string };
  t.equal(built.VERSION, '9.8.7');
  t.equal(built.DEFAULT_USER_AGENT, 'oci-registry/9.8.7');
});

t.test('a package.json without a version string is refused with its path', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'version-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'x' }));
  t.throws(() => readVersion(pathToFileURL(join(dir, 'package.json'))), /package\.json: no "version" string/);
});
