import { createRequire } from 'node:module';

import type { Agent, buildConnector, Dispatcher } from 'undici';

/** The parts of undici the mirror uses. */
export interface Undici {
  Agent: typeof Agent;
  buildConnector: typeof buildConnector;
  /** undici's request(url, options) with the dispatcher given in the options (never the global one). */
  request(url: string | URL, options: RequestOptions): Promise<Dispatcher.ResponseData>;
}

export type RequestOptions = Omit<Dispatcher.RequestOptions, 'origin' | 'path' | 'method'> & {
  method?: Dispatcher.HttpMethod;
  dispatcher: Dispatcher;
};

interface ApiModule {
  request(this: Dispatcher, options: Dispatcher.RequestOptions): Promise<Dispatcher.ResponseData>;
}

const requireCjs = createRequire(import.meta.url);
let loaded: Undici | undefined;

/**
 * undici, loaded on first use and only the parts the mirror calls: its index loads every API it offers
 * (fetch, WebSocket, cookies, caches, mocks), three times the load time and twice the memory of the
 * dispatcher, connector and request API alone, and a server needs none of it until it first talks to an
 * upstream (an admin command may never). undici has no `exports` map, so these are its own module paths;
 * the upstream tests fail at once if a new version moves them. CommonJS: it loads synchronously and
 * callers stay as they are.
 */
export function undici(): Undici {
  if (loaded) return loaded;
  const api = requireCjs('undici/lib/api') as ApiModule;
  loaded = {
    Agent: requireCjs('undici/lib/dispatcher/agent') as typeof Agent,
    buildConnector: requireCjs('undici/lib/core/connect') as typeof buildConnector,
    // What undici's own request() does with a URL, minus the global dispatcher.
    request: (url, options) => {
      const u = typeof url === 'string' ? new URL(url) : url;
      return api.request.call(options.dispatcher, {
        ...options,
        origin: u.origin,
        path: u.search ? `${u.pathname}${u.search}` : u.pathname,
        method: options.method ?? 'GET',
      });
    },
  };
  return loaded;
}
