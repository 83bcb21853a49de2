export const REDACTED = '<redacted>';

/**
 * `https://user:pass@minio:9000` -> `https://<redacted>@minio:9000`, wherever a URL appears in `text`:
 * credentials inside URLs never print (neither in `config` output nor in error messages).
 */
export function redactUrlCredentials(text: string): string {
  return text.replace(/([a-zA-Z][a-zA-Z0-9+.-]*:\/\/)[^/?#@\s"'`]*@/g, `$1${REDACTED}@`);
}
