/**
 * The part of JSON Schema (as TypeBox writes it, and as OpenAPI 3.0 carries
 * it, with `nullable`) the fuzz generators read. Everything is optional:
 * an empty schema accepts any value.
 */
export interface JsonSchema {
  readonly type?: string | ReadonlyArray<string>
  readonly const?: unknown
  readonly enum?: ReadonlyArray<unknown>
  readonly anyOf?: ReadonlyArray<JsonSchema>
  readonly oneOf?: ReadonlyArray<JsonSchema>
  readonly properties?: Readonly<Record<string, JsonSchema>>
  readonly required?: ReadonlyArray<string>
  readonly additionalProperties?: boolean | JsonSchema
  readonly items?: JsonSchema
  readonly minItems?: number
  readonly maxItems?: number
  readonly uniqueItems?: boolean
  readonly minLength?: number
  readonly maxLength?: number
  readonly pattern?: string
  readonly format?: string
  readonly minimum?: number
  readonly maximum?: number
  /** OpenAPI 3.0's way of saying "or null". */
  readonly nullable?: boolean
  readonly description?: string
}

/** The type names a schema allows (a `const` or `enum` implies its values' types), empty when it does not say. */
export function schemaTypes(schema: JsonSchema): ReadonlyArray<string> {
  if (typeof schema.type === 'string') return [schema.type]
  if (Array.isArray(schema.type)) return schema.type
  if (schema.const !== undefined) return [jsonType(schema.const)]
  if (schema.enum !== undefined) return [...new Set(schema.enum.map(jsonType))]
  return []
}

/** A value's JSON type name (`integer` for whole numbers). */
export function jsonType(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'array'
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number'
  return typeof value
}

/**
 * The schema with OpenAPI 3.0's `nullable: true` rewritten as
 * `anyOf: [schema, { type: 'null' }]`, all the way down, so a plain JSON
 * Schema validator (TypeBox's compiler) reads response schemas as meant.
 */
export function withoutNullable(schema: JsonSchema): JsonSchema {
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(schema)) {
    if (key === 'nullable') continue
    if (key === 'properties') out[key] = Object.fromEntries(Object.entries(value as Record<string, JsonSchema>).map(([k, v]) => [k, withoutNullable(v)]))
    else if (key === 'items' || (key === 'additionalProperties' && typeof value === 'object')) out[key] = withoutNullable(value as JsonSchema)
    else if (key === 'anyOf' || key === 'oneOf' || key === 'allOf') out[key] = (value as JsonSchema[]).map(withoutNullable)
    else out[key] = value
  }
  return schema.nullable === true ? { anyOf: [out as JsonSchema, { type: 'null' }] } : (out as JsonSchema)
}
