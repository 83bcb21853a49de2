/** A one-line reason for a log entry: the errno code when there is one, then the message. */
export function errMessage(e: unknown): string {
  const err = e as { code?: string; message?: string };
  return err.code ? `${err.code}: ${err.message ?? ''}` : (err.message ?? String(e));
}
