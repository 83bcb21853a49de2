import type { Command } from 'commander';
import type { StorageOptions } from '../../storage/create-storage.js';
import type { GlobalOptions } from '../global-options.js';
import { registerConfig } from './config.js';
import { registerExport } from './export.js';
import { registerImport } from './import.js';
import { registerPrefetch } from './prefetch.js';
import { registerLs } from './ls.js';
import { registerPrune } from './prune.js';

/**
 * Admin commands run against the same storage as the server, chosen by the same subcommand and flags:
 * `oci-registry [global flags] filesystem --root DIR <admin command> ...`. Each module registers itself here.
 */
export interface AdminContext {
  global: GlobalOptions;
  storage: StorageOptions;
}

export type AdminCommandRegistrar = (storageCommand: Command, context: () => AdminContext) => void;

const registrars: AdminCommandRegistrar[] = [registerPrefetch, registerImport, registerExport, registerLs, registerPrune, registerConfig];

export function registerAdminCommands(storageCommand: Command, context: () => AdminContext): void {
  for (const register of registrars) register(storageCommand, context);
}
