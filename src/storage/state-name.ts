/** The grammar of state object names (Storage.getState and friends), checked by every backend. */
const STATE_NAME = /^[a-z0-9._-]+(\/[a-z0-9._-]+)*$/;

/** Returns the name when it is valid, else throws: `[a-z0-9._-]+` segments joined by `/`, none `.` or `..`. */
export function checkStateName(name: string): string {
  if (!STATE_NAME.test(name) || name.split('/').some((s) => s === '.' || s === '..')) {
    throw new Error(`invalid state object name ${JSON.stringify(name.slice(0, 100))}`);
  }
  return name;
}

/** A listState prefix: empty, or a valid name optionally followed by `/`. */
export function checkStatePrefix(prefix: string): string {
  if (prefix === '') return prefix;
  checkStateName(prefix.endsWith('/') ? prefix.slice(0, -1) : prefix);
  return prefix;
}
