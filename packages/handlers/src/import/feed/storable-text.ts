/** A UTF-16 surrogate without its other half: not Unicode text, and refused by jsonb. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/** What makes a string unstorable in PostgreSQL, or null when it can be stored as it is. */
export function unstorableCharacter(text: string): 'a NUL character' | 'a lone UTF-16 surrogate' | null {
  if (text.includes('\u0000')) return 'a NUL character'
  return LONE_SURROGATE.test(text) ? 'a lone UTF-16 surrogate' : null
}

/**
 * `text` made safe for a PostgreSQL text column: NUL characters and lone
 * surrogates become U+FFFD (text cannot hold the first; the driver would turn
 * the second into U+FFFD anyway, and jsonb refuses it), and the result is cut
 * to `maxChars` without splitting a surrogate pair. Used for what an error
 * report quotes from a bad row, so the report of a bad row can always be written.
 *
 * @example storableText('sku-\u0000', 128) // 'sku-\uFFFD'
 */
export function storableText(text: string, maxChars: number): string {
  let out = text.replaceAll('\u0000', '\uFFFD').replace(new RegExp(LONE_SURROGATE.source, 'g'), '\uFFFD')
  if (out.length > maxChars) {
    out = out.slice(0, maxChars)
    // A high surrogate at the cut would be alone.
    if (/[\uD800-\uDBFF]$/.test(out)) out = out.slice(0, -1)
  }
  return out
}
