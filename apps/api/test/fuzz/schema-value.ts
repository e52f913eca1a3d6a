import type { Rng } from './create-rng.ts'
import { UNICODE_ALPHABET } from './bad-bodies.ts'
import { schemaTypes, type JsonSchema } from './json-schema.ts'

/** Where a value sits in the document being built: property names and array indexes. */
export type ValuePath = ReadonlyArray<string | number>

/** Returned by an override to let the schema decide. */
export const FROM_SCHEMA: unique symbol = Symbol('from schema')

/** Options of {@link schemaValue}. */
export interface SchemaValueOptions {
  /**
   * Supplies a value for a path the schema cannot describe well (a store
   * id that depends on the caller, a payload whose schema depends on the
   * job type), or {@link FROM_SCHEMA}. A property whose override answers
   * `undefined` is left out of its object.
   */
  readonly override?: (path: ValuePath, schema: JsonSchema) => unknown
}

/** Longest string drawn when the schema allows more: long strings are the mutations' business. */
const TYPICAL_MAX_LENGTH = 40
/** Most array items drawn above `minItems`. */
const EXTRA_ITEMS = 3

/**
 * Strings that satisfy common patterns: locales, semantic versions, URLs,
 * decimal ids, slugs. A patterned string is drawn from the candidates its
 * pattern accepts, so generated values look like what callers send.
 */
function patternCandidates(rng: Rng): string[] {
  return [
    'de',
    'en',
    'en-US',
    'fr-CA',
    'zh-Hant',
    String(rng.int(1, 9)),
    String(rng.int(10, 999_999)),
    String(rng.int(1, 2 ** 31)) + String(rng.int(0, 99_999)),
    `${rng.int(0, 20)}.${rng.int(0, 20)}.${rng.int(0, 20)}`,
    `1.0.${rng.int(0, 9)}-beta.${rng.int(1, 9)}`,
    '10.2.3+build.7',
    `https://feeds.example.test/${rng.string(rng.int(1, 12))}.csv`,
    'http://127.0.0.1:9/feed.jsonl',
    rng.string(rng.int(1, 20), 'abcdefghijklmnopqrstuvwxyz0123456789-'),
    rng.string(rng.int(1, 20), 'abcdefghijklmnopqrstuvwxyz0123456789._-'),
    `SKU-${rng.int(1, 99_999)}`,
  ]
}

/** An RFC 3339 instant around now (a day either side). */
export function dateTimeValue(rng: Rng): string {
  return new Date(Date.now() + rng.int(-86_400_000, 86_400_000)).toISOString()
}

function stringValue(rng: Rng, schema: JsonSchema): string {
  if (schema.format === 'date-time') return dateTimeValue(rng)
  const min = schema.minLength ?? 0
  const max = schema.maxLength ?? Math.max(min, TYPICAL_MAX_LENGTH)
  if (schema.pattern !== undefined) {
    const pattern = new RegExp(schema.pattern, 'u')
    const fits = patternCandidates(rng).filter((s) => pattern.test(s) && s.length >= min && s.length <= max)
    if (fits.length > 0) return rng.pick(fits)
  }
  // Boundary lengths come up often: off-by-one bugs live there.
  const length = rng.pick([min, max, rng.int(min, Math.min(max, min + TYPICAL_MAX_LENGTH)), rng.int(min, Math.min(max, min + TYPICAL_MAX_LENGTH))])
  const text = rng.chance(0.15) ? rng.string(length, UNICODE_ALPHABET) : rng.string(length)
  // Multi-unit characters may overshoot the length in UTF-16 units: trim back
  // to it, never through a surrogate pair (half of one is a defect of its own).
  const trimmed = text.length > max ? text.slice(0, max).replace(/[\ud800-\udbff]$/, '') : text
  return trimmed.length < min ? trimmed.padEnd(min, 'x') : trimmed
}

function numberValue(rng: Rng, schema: JsonSchema, integer: boolean): number {
  const min = schema.minimum ?? (schema.maximum !== undefined ? schema.maximum - 1_000 : 0)
  const max = schema.maximum ?? min + 1_000_000
  const inside = integer ? rng.int(min, Math.min(max, Number.MAX_SAFE_INTEGER)) : min + rng.next() * (max - min)
  const candidates = [min, max, inside, inside, inside]
  if (min < max) candidates.push(min + 1, max - 1)
  return rng.pick(candidates)
}

/** Any JSON value, small: for schemas that say nothing. */
export function anyJsonValue(rng: Rng, depth = 0): unknown {
  const leaf = (): unknown => rng.pick<() => unknown>([() => null, () => rng.chance(0.5), () => rng.int(-1_000, 1_000), () => rng.string(rng.int(0, 12))])()
  if (depth >= 2 || rng.chance(0.5)) return leaf()
  if (rng.chance(0.5)) return Array.from({ length: rng.int(0, 3) }, () => anyJsonValue(rng, depth + 1))
  return Object.fromEntries(Array.from({ length: rng.int(0, 3) }, () => [rng.string(rng.int(1, 8)), anyJsonValue(rng, depth + 1)]))
}

/**
 * A value the schema accepts, or close to it (patterns are met from a list
 * of common shapes; when none fits, a plain string is used): what a
 * well-meaning client would send. Lengths and numbers favour their bounds.
 * Deterministic for a given `rng` state.
 *
 * @example
 * schemaValue(rng, { type: 'object', required: ['n'], properties: { n: { type: 'integer', minimum: 1, maximum: 9 } } }) // { n: 9 }
 */
export function schemaValue(rng: Rng, schema: JsonSchema, options: SchemaValueOptions = {}, path: ValuePath = []): unknown {
  const forced = options.override === undefined ? FROM_SCHEMA : options.override(path, schema)
  if (forced !== FROM_SCHEMA) return forced
  if (schema.const !== undefined) return schema.const
  if (schema.enum !== undefined && schema.enum.length > 0) return rng.pick(schema.enum)
  const branches = schema.anyOf ?? schema.oneOf
  if (branches !== undefined && branches.length > 0) return schemaValue(rng, rng.pick(branches), options, path)
  if (schema.nullable === true && rng.chance(0.2)) return null
  const types = schemaTypes(schema)
  const type = types.length > 0 ? rng.pick(types) : schema.properties !== undefined ? 'object' : 'any'
  switch (type) {
    case 'string':
      return stringValue(rng, schema)
    case 'integer':
      return numberValue(rng, schema, true)
    case 'number':
      return numberValue(rng, schema, false)
    case 'boolean':
      return rng.chance(0.5)
    case 'null':
      return null
    case 'array': {
      const min = schema.minItems ?? 0
      const count = rng.int(min, Math.min(schema.maxItems ?? min + EXTRA_ITEMS, min + EXTRA_ITEMS))
      const items: unknown[] = []
      const seen = new Set<string>()
      for (let i = 0; items.length < count && i < count * 4; i++) {
        const item = schemaValue(rng, schema.items ?? {}, options, [...path, items.length])
        const key = JSON.stringify(item)
        if (schema.uniqueItems === true && seen.has(key)) continue
        seen.add(key)
        items.push(item)
      }
      return items
    }
    case 'object': {
      const out: Record<string, unknown> = {}
      const required = new Set(schema.required ?? [])
      for (const [name, property] of Object.entries(schema.properties ?? {})) {
        const at = [...path, name]
        // An override decides presence too (a store id one caller must send and another must not).
        const forcedProperty = options.override === undefined ? FROM_SCHEMA : options.override(at, property)
        if (forcedProperty === FROM_SCHEMA && !required.has(name) && rng.chance(0.5)) continue
        const value = forcedProperty === FROM_SCHEMA ? schemaValue(rng, property, options, at) : forcedProperty
        if (value !== undefined) out[name] = value
      }
      return out
    }
    default:
      return anyJsonValue(rng)
  }
}
