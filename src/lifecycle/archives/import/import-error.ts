import { errorText } from '../../../error-text.js';

/** Why an archive was refused or could not be stored; the message is for the operator. */
export class ImportError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ImportError';
  }
}

/** A storage (or spool) operation: its failure is the cache's problem, not the archive's. */
export async function storing<T>(name: string, op: Promise<T>): Promise<T> {
  try {
    return await op;
  } catch (e) {
    if (e instanceof ImportError) throw e;
    throw new ImportError(`cannot store ${name} in the cache: ${errorText(e)}`, { cause: e });
  }
}

/** A JSON file of the archive; bad JSON refuses the archive. */
export function parseJson(bytes: Buffer, what: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8')) as unknown;
  } catch {
    throw new ImportError(`${what}: not valid JSON`);
  }
}
