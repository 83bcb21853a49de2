/**
 * Distribution refuses manifests above 4 MiB, and so do we: from upstream, from an imported archive.
 * A manifest is held in memory whole (it is hashed and parsed), so the cap also bounds that.
 */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
