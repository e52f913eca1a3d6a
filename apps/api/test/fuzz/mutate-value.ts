import { deepNesting, UNICODE_ALPHABET } from './bad-bodies.ts'
import type { Rng } from './create-rng.ts'
import { jsonType, schemaTypes, type JsonSchema } from './json-schema.ts'
import type { ValuePath } from './schema-value.ts'
import { RawJson } from './to-json.ts'

/** A value after mutation, and what was done to it (for failure reports). */
export interface MutatedValue {
  readonly value: unknown
  readonly defects: ReadonlyArray<string>
}

/** One place in a value a mutation may hit, with the schema that governs it. */
interface Slot {
  readonly path: ValuePath
  readonly schema: JsonSchema
  readonly value: unknown
}

/** Field names a caller might try to smuggle in: queue-owned columns, other spellings, prototype keys. */
const EXTRA_FIELD_NAMES = ['state', 'attempt', 'lockedBy', 'id', 'store_id', 'storeIds', 'admin', 'secret', 'constructor', 'x', 'Type', 'PAYLOAD']

/** Strings that break patterns, formats and naive code: traversal, quoting, control characters, escapes. */
const HOSTILE_STRINGS = ['../../etc/passwd', "'; drop table jobs; --", 'a b', ' ', '\n', '\t', '%00', '%', '${x}', '<script>', '\\', '"', '1e400', 'NaN', '-0', 'null', '🙂'.repeat(3), '\u202e', 'a\u0301']

/** Deep copy that keeps {@link RawJson} pieces and own `__proto__` keys. */
function clone(value: unknown): unknown {
  if (value instanceof RawJson || value === null || typeof value !== 'object') return value
  if (Array.isArray(value)) return value.map(clone)
  const out: Record<string, unknown> = {}
  for (const [key, v] of Object.entries(value)) Object.defineProperty(out, key, { value: clone(v), enumerable: true, writable: true, configurable: true })
  return out
}

/** The branch of a union that describes `value` (by type and const), else the first. */
function branchFor(schema: JsonSchema, value: unknown): JsonSchema {
  const branches = schema.anyOf ?? schema.oneOf
  if (branches === undefined || branches.length === 0) return schema
  const type = jsonType(value)
  const fits = branches.find((b) => (b.const === undefined || b.const === value) && (schemaTypes(b).length === 0 || schemaTypes(b).includes(type) || (type === 'integer' && schemaTypes(b).includes('number'))))
  return branchFor(fits ?? branches[0]!, value)
}

function collectSlots(value: unknown, schema: JsonSchema, path: ValuePath, out: Slot[]): void {
  const own = branchFor(schema, value)
  out.push({ path, schema: own, value })
  if (value instanceof RawJson || value === null || typeof value !== 'object') return
  if (Array.isArray(value)) {
    value.forEach((item, i) => collectSlots(item, own.items ?? {}, [...path, i], out))
    return
  }
  for (const [key, v] of Object.entries(value)) collectSlots(v, own.properties?.[key] ?? {}, [...path, key], out)
}

/** Sets (or with `undefined`, deletes) the value at `path`; false when the path no longer exists (an earlier defect replaced a parent). */
function setAt(root: { value: unknown }, path: ValuePath, next: unknown): boolean {
  if (path.length === 0) {
    root.value = next
    return true
  }
  let parent: unknown = root.value
  for (const step of path.slice(0, -1)) {
    if (parent === null || typeof parent !== 'object' || parent instanceof RawJson) return false
    parent = (parent as Record<string | number, unknown>)[step]
  }
  if (parent === null || typeof parent !== 'object' || parent instanceof RawJson) return false
  const last = path[path.length - 1]!
  if (Array.isArray(parent) && typeof last === 'number') {
    if (next === undefined) parent.splice(last, 1)
    else parent[last] = next
    return true
  }
  const record = parent as Record<string, unknown>
  if (next === undefined) delete record[last]
  else Object.defineProperty(record, String(last), { value: next, enumerable: true, writable: true, configurable: true })
  return true
}

/** A value of a JSON type the schema does not allow (any value when the schema allows every type). */
function wrongType(rng: Rng, schema: JsonSchema, marker: string): unknown {
  const allowed = schemaTypes(schema)
  const candidates: ReadonlyArray<readonly [string, unknown]> = [
    ['null', null],
    ['boolean', true],
    ['integer', rng.int(-5, 5)],
    ['number', 2.5],
    ['string', rng.pick(['', 'x', marker, '42'])],
    ['array', rng.pick([[], [1, 'a'], [marker]])],
    ['object', rng.pick<unknown>([{}, { a: 1 }, { nested: { marker } }])],
  ]
  const wrong = candidates.filter(([type]) => !allowed.includes(type) && !(type === 'integer' && allowed.includes('number')))
  return rng.pick(wrong.length > 0 ? wrong : candidates)[1]
}

/** One defect for a slot: its name and the value that replaces the slot's (undefined: remove it). */
function defectFor(rng: Rng, slot: Slot, marker: string): readonly [string, unknown] {
  const { schema, value } = slot
  const options: Array<() => readonly [string, unknown]> = [
    () => ['wrong type', wrongType(rng, schema, marker)],
    () => ['null', null],
  ]
  if (slot.path.length > 0) options.push(() => ['removed', undefined])
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof RawJson)) {
    const record = value as Record<string, unknown>
    const required = (schema.required ?? []).filter((k) => k in record)
    if (required.length > 0) {
      options.push(() => {
        const key = rng.pick(required)
        const copy = clone(record) as Record<string, unknown>
        delete copy[key]
        return [`missing required ${key}`, copy]
      })
    }
    options.push(() => {
      const name = rng.chance(0.8) ? rng.pick(EXTRA_FIELD_NAMES) : rng.string(rng.int(1, 30), UNICODE_ALPHABET)
      const copy = clone(record) as Record<string, unknown>
      Object.defineProperty(copy, name, { value: rng.pick<unknown>([marker, 1, null, { x: marker }]), enumerable: true, writable: true, configurable: true })
      return [`extra field ${name}`, copy]
    })
    options.push(() => {
      const copy = clone(record) as Record<string, unknown>
      Object.defineProperty(copy, '__proto__', { value: { polluted: marker }, enumerable: true, writable: true, configurable: true })
      return ['own __proto__ key', copy]
    })
  }
  if (typeof value === 'string') {
    const max = schema.maxLength ?? 200
    options.push(
      () => ['one over maxLength', value.padEnd(max + 1, 'y').slice(0, max + 1)],
      () => ['very long string', 'L'.repeat(rng.int(1_000, 20_000))],
      () => ['empty string', ''],
      () => ['U+0000 inside', `${value.slice(0, 3)}\u0000${value.slice(3)}`],
      () => ['lone surrogate', rng.pick([`${value}\ud800`, `\udc00${value}`])],
      () => ['unicode', rng.string(rng.int(1, 30), UNICODE_ALPHABET)],
      () => ['hostile string', rng.pick(HOSTILE_STRINGS)],
      () => ['padded with spaces', ` ${value} `],
      () => ['upper case', value.toUpperCase()],
    )
    if (schema.format === 'date-time') {
      options.push(() => ['bad date-time', rng.pick(['2024-13-01T00:00:00Z', '2024-02-30T10:00:00Z', '2024-01-01', 'yesterday', '0000-00-00T00:00:00Z', '+275760-09-13T00:00:00Z', '2024-01-01T00:00:00+25:00'])])
    }
  }
  if (typeof value === 'number') {
    const min = schema.minimum ?? 0
    const max = schema.maximum ?? 2 ** 31
    options.push(
      () => ['below minimum', min - 1],
      () => ['above maximum', max + 1],
      () => ['fraction', min + 0.5],
      () => ['number as text', String(value)],
      () => ['huge number', rng.pick<unknown>([new RawJson('1e400'), new RawJson('-1e400'), 2 ** 63, -(2 ** 63) - 1024, Number.MAX_SAFE_INTEGER + 2])],
      () => ['negative zero', new RawJson('-0')],
      () => ['exponent form', new RawJson(`${Math.max(1, Math.trunc(min))}e0`)],
    )
  }
  if (typeof value === 'boolean') options.push(() => ['boolean as text', String(value)])
  if (Array.isArray(value)) {
    options.push(
      () => ['empty array', []],
      () => ['item of the wrong type', [...value.map(clone), wrongType(rng, schema.items ?? {}, marker)]],
      () => {
        const count = schema.maxItems !== undefined ? schema.maxItems + 1 : rng.int(50, 1_200)
        const item = value.length > 0 ? value[0] : null
        return [`${count} items`, Array.from({ length: count }, () => clone(item))]
      },
    )
  }
  if (schema.const !== undefined || schema.enum !== undefined) {
    options.push(() => ['not one of the allowed values', rng.pick(['', 'other', String(value).toUpperCase(), `${String(value)} `])])
  }
  options.push(() => ['deep nesting', deepNesting(rng.int(20, 300))])
  return rng.pick(options)()
}

/**
 * `value` (which `schema` describes) with 1 to 3 defects at random places:
 * wrong types, missing required or extra fields, values past their bounds,
 * long strings, U+0000, lone surrogates, unicode, hostile text, huge or
 * odd numbers (as {@link RawJson} where JSON.stringify cannot write them),
 * empty or oversized arrays, deep nesting. The result may occasionally
 * still be valid (a defect can land where anything goes): callers assert
 * what must hold for any request, not a status per request.
 *
 * @example
 * mutateValue(rng, { n: 3 }, schema, 'MARKER') // { value: { n: 4294967297 }, defects: ['/n: above maximum'] }
 */
export function mutateValue(rng: Rng, value: unknown, schema: JsonSchema, marker: string): MutatedValue {
  const root = { value: clone(value) }
  const defects: string[] = []
  const wanted = rng.int(1, 3)
  for (let i = 0; i < wanted; i++) {
    const slots: Slot[] = []
    collectSlots(root.value, schema, [], slots)
    const slot = rng.pick(slots)
    const [name, next] = defectFor(rng, slot, marker)
    if (setAt(root, slot.path, next)) defects.push(`/${slot.path.join('/')}: ${name}`)
  }
  return { value: root.value, defects }
}
