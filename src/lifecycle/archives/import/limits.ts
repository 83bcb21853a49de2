/** Size limits of what an import reads into memory. */

/** Distribution refuses manifests above 4 MiB. */
export const MAX_MANIFEST = 4 * 1024 * 1024;
/** manifest.json / index.json of a large multi-image archive. */
export const MAX_METADATA = 16 * 1024 * 1024;
