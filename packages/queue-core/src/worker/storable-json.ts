/** What NUL and lone surrogates become: U+FFFD REPLACEMENT CHARACTER. */
const REPLACEMENT = '\ufffd'
/** A UTF-16 surrogate without its partner. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g
/**
 * In JSON.stringify output, the escapes PostgreSQL refuses: `\u0000`
 * (jsonb cannot hold NUL) and a lone surrogate, which JSON.stringify writes
 * as an escape (`\ud800`). A pair is written as its characters, never escaped.
 */
const REFUSED_ESCAPE = /\\u(?:0000|d[89a-f])/

/**
 * `text` with NUL and lone surrogates replaced by U+FFFD: text PostgreSQL
 * stores in `text` and `jsonb` alike (a NUL fails either; a lone surrogate
 * fails jsonb, SQLSTATE 22P05 / 22P02, and with it the whole statement).
 */
export function storableText(text: string): string {
  const noNul = text.includes('\u0000') ? text.replaceAll('\u0000', REPLACEMENT) : text
  return noNul.replace(LONE_SURROGATE, REPLACEMENT)
}

/**
 * JSON text of `value` that a `jsonb` cast accepts: keys and strings have
 * NUL and lone surrogates replaced by U+FFFD. Undefined when `value` has no
 * JSON form (undefined, a function); throws what JSON.stringify throws
 * (a cycle, a BigInt). Clean text, the usual case, costs one regex test.
 */
export function storableJson(value: unknown): string | undefined {
  const text = JSON.stringify(value)
  if (text === undefined || !REFUSED_ESCAPE.test(text)) return text
  // A false alarm (an escaped backslash before "u0000") only costs the rebuild.
  return JSON.stringify(clean(JSON.parse(text)))
}

function clean(value: unknown): unknown {
  if (typeof value === 'string') return storableText(value)
  if (Array.isArray(value)) return value.map(clean)
  if (value !== null && typeof value === 'object') {
    // fromEntries defines own properties, so a "__proto__" key stays a key.
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [storableText(k), clean(v)]))
  }
  return value
}
