import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import t from 'tap';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const src = (p: string): string => pathToFileURL(path.join(repoRoot, 'src', p)).href;

t.test('undici is not loaded until an upstream is first used, and then only its dispatcher and request API', async (t) => {
  const loader = process.execArgv.find((a) => a.includes('@tapjs/typescript'));
  if (!loader) {
    t.pass('needs the TypeScript loader tap runs tests with');
    return;
  }
  // In a fresh process: what the server's modules load, then what a first upstream use loads.
  const script = `
    import { createRequire } from 'node:module';
    const cached = () => Object.keys(createRequire(import.meta.url).cache);
    const loaded = () => cached().some((k) => /[\\\\/]node_modules[\\\\/]undici[\\\\/]/.test(k));
    const all = () => cached().some((k) => /[\\\\/]node_modules[\\\\/]undici[\\\\/](index\\.js|lib[\\\\/]web[\\\\/])/.test(k));
    await import(${JSON.stringify(src('cli/serve.ts'))});
    await import(${JSON.stringify(src('server/create-server.ts'))});
    const before = loaded();
    const { createUpstreamDispatcher } = await import(${JSON.stringify(src('upstream/dispatcher.ts'))});
    const { defaultUpstreamSettings } = await import(${JSON.stringify(src('config/upstreams.ts'))});
    const agent = createUpstreamDispatcher({ ...defaultUpstreamSettings(), namespace: 'example.com', host: 'example.com', explicit: true });
    console.log(JSON.stringify({ before, after: loaded(), all: all(), agent: typeof agent.dispatch }));
    await agent.close();
  `;
  const r = spawnSync(process.execPath, [loader, '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
  t.equal(r.status, 0, r.stderr);
  t.same(JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}'), { before: false, after: true, all: false, agent: 'function' });
});
