/**
 * JSON text JSON.stringify cannot write: `1e400`, an own `__proto__` key, a
 * lone surrogate left unescaped. Placed in a value, {@link toJson} writes it verbatim.
 */
export class RawJson {
  constructor(readonly text: string) {}
}

/**
 * JSON.stringify with {@link RawJson} pieces written as they are, so the
 * generators can build request bodies no well-behaved client would send.
 *
 * @example
 * toJson({ delayMs: new RawJson('1e400') }) // '{"delayMs":1e400}'
 */
export function toJson(value: unknown): string {
  if (value instanceof RawJson) return value.text
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : toJson(v))).join(',')}]`
  if (value !== null && typeof value === 'object') {
    const parts = Object.entries(value)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${JSON.stringify(k)}:${toJson(v)}`)
    return `{${parts.join(',')}}`
  }
  return JSON.stringify(value)
}
