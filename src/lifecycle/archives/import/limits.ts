/** Size limits of what an import reads into memory. */

/** manifest.json / index.json of a large multi-image archive. */
export const MAX_METADATA = 16 * 1024 * 1024;
