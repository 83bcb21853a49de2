import type { MirrorConfig } from '../config/types.js';
import { loadMirrorConfig } from '../config/upstreams.js';
import type { GlobalOptions } from './global-options.js';

/** The upstream configuration the global flags and the environment describe (shared by every command). */
export function loadConfig(global: GlobalOptions): MirrorConfig {
  return loadMirrorConfig({
    configFile: global.upstreamConfigFile,
    defaultNamespace: global.defaultNamespace,
    allowUnlisted: global.upstreamConfigFile ? global.allowUnlistedNamespaces : true,
    credentialsJson: process.env['UPSTREAM_CREDENTIALS'],
  });
}
