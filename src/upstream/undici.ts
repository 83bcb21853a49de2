import { createRequire } from 'node:module';

type Undici = typeof import('undici');

const requireCjs = createRequire(import.meta.url);
let loaded: Undici | undefined;

/**
 * undici, loaded on first use: it is the largest module the mirror has (its index loads every API it
 * offers, and a WebAssembly HTTP parser), and a server needs it only once it talks to an upstream, so
 * an idle server (or an admin command that never does) does not carry it. It is CommonJS, so it loads
 * synchronously and callers stay as they are.
 */
export function undici(): Undici {
  loaded ??= requireCjs('undici') as Undici;
  return loaded;
}
