/**
 * The one way anything thrown becomes text, for logs and command output: the message, the error's code
 * when the message does not already say it (`ECONNRESET`, an OCI code like `MANIFEST_UNKNOWN`), and an
 * OCI error's detail (bounded: a detail may quote client input). Never throws, whatever was thrown.
 */
const MAX_DETAIL_CHARS = 300;

export function errorText(e: unknown): string {
  if (!(e instanceof Error)) {
    try {
      return String(e);
    } catch {
      return Object.prototype.toString.call(e);
    }
  }
  const code = (e as { code?: unknown }).code;
  const detail = (e as { detail?: unknown }).detail;
  let text = typeof code === 'string' && /^[A-Z0-9_]+$/.test(code) && !e.message.includes(code) ? `${e.message} (${code})` : e.message;
  if (text.length === 0) text = e.name;
  if (detail !== undefined && detail !== null) {
    let json: string | undefined;
    try {
      json = JSON.stringify(detail);
    } catch {
      json = undefined;
    }
    if (json !== undefined && json !== '{}') text += ` ${json.length > MAX_DETAIL_CHARS ? `${json.slice(0, MAX_DETAIL_CHARS)}...` : json}`;
  }
  return text;
}
