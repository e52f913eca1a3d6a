import type { RowErrorCode } from '../import-tables.ts'
import { unstorableCharacter } from './storable-text.ts'

/** A feed row that passed validation, as it is staged and then upserted. */
export interface ProductRow {
  readonly sku: string
  readonly title: string
  readonly description: string
  /** Exact decimal text with at most 2 places (numeric(14,2)). */
  readonly price: string
  /** ISO 4217 code, upper case. */
  readonly currency: string
  readonly stock: number | null
  /** Serialised JSON object (extra CSV columns, extra JSONL fields). */
  readonly attributes: string
}

/** A row's fields before validation: CSV cells or JSONL values. */
export interface RawProduct {
  readonly sku: unknown
  readonly title: unknown
  readonly description: unknown
  readonly price: unknown
  readonly currency: unknown
  readonly stock: unknown
  readonly attributes: Readonly<Record<string, unknown>>
}

/** A rejected line: why (a code and a sentence naming the field), and its SKU when it has a usable one. */
export interface RejectedRow {
  readonly ok: false
  readonly code: RowErrorCode
  /** `<field or format>: <what is wrong>`, e.g. `price: must be a decimal…`; never quotes the row's text. */
  readonly reason: string
  readonly sku: string | null
}

export type ParsedRow = { readonly ok: true; readonly row: ProductRow } | RejectedRow

/** Bounds of one row's fields (the SKU's is the products table's check). */
export const ROW_LIMITS = { sku: 128, title: 1_000, description: 20_000, attributesBytes: 32 * 1024, attributesDepth: 16 } as const

/** numeric(14,2): at most 12 digits before the point, 2 after. */
const PRICE = /^\d{1,12}(\.\d{1,2})?$/
const CURRENCY = /^[A-Za-z]{3}$/
const CONTROL = /[\u0000-\u001f\u007f]/
const MAX_STOCK = 2_147_483_647

/**
 * Validates one feed row. Never throws: a bad row is data (its code and
 * reason go to the import's error report), not a failure of the import.
 *
 * Every text must be storable as it is: PostgreSQL text and jsonb cannot
 * hold NUL, and jsonb refuses lone surrogates (which JSON Lines can spell
 * as `\ud800`). One such row would otherwise fail its whole staging batch on
 * every attempt, so it is rejected here, like attributes nested deeper than
 * ROW_LIMITS.attributesDepth (serialising those would overflow the stack).
 */
export function parseProductRow(raw: RawProduct): ParsedRow {
  const skuText = typeof raw.sku === 'number' && Number.isSafeInteger(raw.sku) ? String(raw.sku) : raw.sku
  const sku = typeof skuText === 'string' ? skuText.trim() : null
  const bad = (code: RowErrorCode, reason: string): RejectedRow => ({ ok: false, code, reason, sku: sku && sku.length <= ROW_LIMITS.sku ? sku : null })
  if (sku === null || sku.length === 0) return bad('invalid_field', 'sku: required')
  if (sku.length > ROW_LIMITS.sku) return bad('field_too_large', `sku: longer than ${ROW_LIMITS.sku} characters`)
  if (CONTROL.test(sku)) return bad('invalid_character', 'sku: contains control characters')
  const skuFlaw = unstorableCharacter(sku)
  if (skuFlaw) return bad('invalid_character', `sku: contains ${skuFlaw}`)

  if (typeof raw.title !== 'string' || raw.title.trim().length === 0) return bad('invalid_field', 'title: required')
  const title = raw.title.trim()
  if (title.length > ROW_LIMITS.title) return bad('field_too_large', `title: longer than ${ROW_LIMITS.title} characters`)
  const titleFlaw = unstorableCharacter(title)
  if (titleFlaw) return bad('invalid_character', `title: contains ${titleFlaw}`)

  const description = raw.description === undefined || raw.description === null ? '' : raw.description
  if (typeof description !== 'string') return bad('invalid_field', 'description: must be text')
  if (description.length > ROW_LIMITS.description) return bad('field_too_large', `description: longer than ${ROW_LIMITS.description} characters`)
  const descriptionFlaw = unstorableCharacter(description)
  if (descriptionFlaw) return bad('invalid_character', `description: contains ${descriptionFlaw}`)

  const price = priceText(raw.price)
  if (price === null) return bad('invalid_field', 'price: must be a decimal >= 0 with at most 2 decimal places')

  if (typeof raw.currency !== 'string' || !CURRENCY.test(raw.currency.trim())) return bad('invalid_field', 'currency: must be a 3-letter ISO 4217 code')
  const currency = raw.currency.trim().toUpperCase()

  const stock = stockValue(raw.stock)
  if (stock === undefined) return bad('invalid_field', `stock: must be a whole number from 0 to ${MAX_STOCK}, or empty`)

  const attributesFlaw = checkJsonValue(raw.attributes, ROW_LIMITS.attributesDepth)
  if (attributesFlaw === 'too_deep') return bad('field_too_large', `attributes: nested deeper than ${ROW_LIMITS.attributesDepth} levels`)
  if (attributesFlaw) return bad('invalid_character', `attributes: contain ${attributesFlaw}`)
  const attributes = JSON.stringify(raw.attributes)
  if (Buffer.byteLength(attributes) > ROW_LIMITS.attributesBytes) return bad('field_too_large', `attributes: larger than ${ROW_LIMITS.attributesBytes} bytes`)

  return { ok: true, row: { sku, title, description, price, currency, stock, attributes } }
}

/**
 * Walks a parsed JSON value without recursion (a line of `[[[[…` is a
 * million levels deep) and reports the first problem: nesting past
 * `maxDepth`, or a key or string PostgreSQL cannot store.
 */
function checkJsonValue(value: unknown, maxDepth: number): 'too_deep' | NonNullable<ReturnType<typeof unstorableCharacter>> | null {
  const stack: Array<{ readonly value: unknown; readonly depth: number }> = [{ value, depth: 0 }]
  for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
    const v = item.value
    if (typeof v === 'string') {
      const flaw = unstorableCharacter(v)
      if (flaw) return flaw
    } else if (typeof v === 'object' && v !== null) {
      if (item.depth >= maxDepth) return 'too_deep'
      for (const [key, child] of Object.entries(v)) {
        if (!Array.isArray(v)) {
          const flaw = unstorableCharacter(key)
          if (flaw) return flaw
        }
        stack.push({ value: child, depth: item.depth + 1 })
      }
    }
  }
  return null
}

function priceText(value: unknown): string | null {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) return null
    // String(1e21) is "1e+21" and String(0.1 + 0.2) has 17 places: both fail the pattern.
    const text = String(value)
    return PRICE.test(text) ? text : null
  }
  if (typeof value !== 'string') return null
  const text = value.trim()
  return PRICE.test(text) ? text : null
}

/** The stock, null when absent, undefined when invalid. */
function stockValue(value: unknown): number | null | undefined {
  if (value === undefined || value === null) return null
  if (typeof value === 'string') {
    const text = value.trim()
    if (text === '') return null
    if (!/^\d{1,10}$/.test(text)) return undefined
    value = Number(text)
  }
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= MAX_STOCK ? value : undefined
}
