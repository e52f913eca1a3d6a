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

export type ParsedRow = { readonly ok: true; readonly row: ProductRow } | { readonly ok: false; readonly reason: string; readonly sku: string | null }

/** Bounds of one row's fields (the SKU's is the products table's check). */
export const ROW_LIMITS = { sku: 128, title: 1_000, description: 20_000, attributesBytes: 32 * 1024 } as const

/** numeric(14,2): at most 12 digits before the point, 2 after. */
const PRICE = /^\d{1,12}(\.\d{1,2})?$/
const CURRENCY = /^[A-Za-z]{3}$/
const CONTROL = /[\u0000-\u001f\u007f]/
const MAX_STOCK = 2_147_483_647

/**
 * Validates one feed row. Never throws: a bad row is data (its reason goes
 * to the import's error report), not a failure of the import.
 *
 * PostgreSQL text and jsonb cannot hold NUL characters; a row with one is
 * rejected here, since one such row would otherwise fail its whole batch on
 * every attempt.
 */
export function parseProductRow(raw: RawProduct): ParsedRow {
  const skuText = typeof raw.sku === 'number' && Number.isSafeInteger(raw.sku) ? String(raw.sku) : raw.sku
  const sku = typeof skuText === 'string' ? skuText.trim() : null
  const bad = (reason: string): ParsedRow => ({ ok: false, reason, sku: sku && sku.length <= ROW_LIMITS.sku ? sku : null })
  if (sku === null || sku.length === 0) return bad('sku: required')
  if (sku.length > ROW_LIMITS.sku) return bad(`sku: longer than ${ROW_LIMITS.sku} characters`)
  if (CONTROL.test(sku)) return bad('sku: contains control characters')

  if (typeof raw.title !== 'string' || raw.title.trim().length === 0) return bad('title: required')
  const title = raw.title.trim()
  if (title.length > ROW_LIMITS.title) return bad(`title: longer than ${ROW_LIMITS.title} characters`)

  const description = raw.description === undefined || raw.description === null ? '' : raw.description
  if (typeof description !== 'string') return bad('description: must be text')
  if (description.length > ROW_LIMITS.description) return bad(`description: longer than ${ROW_LIMITS.description} characters`)

  const price = priceText(raw.price)
  if (price === null) return bad('price: must be a decimal >= 0 with at most 2 decimal places')

  if (typeof raw.currency !== 'string' || !CURRENCY.test(raw.currency.trim())) return bad('currency: must be a 3-letter ISO 4217 code')
  const currency = raw.currency.trim().toUpperCase()

  const stock = stockValue(raw.stock)
  if (stock === undefined) return bad(`stock: must be a whole number from 0 to ${MAX_STOCK}, or empty`)

  const attributes = JSON.stringify(raw.attributes)
  if (Buffer.byteLength(attributes) > ROW_LIMITS.attributesBytes) return bad(`attributes: larger than ${ROW_LIMITS.attributesBytes} bytes`)
  if ([title, description].some((s) => s.includes('\u0000')) || attributes.includes('\\u0000')) return bad('row: contains a NUL character')

  return { ok: true, row: { sku, title, description, price, currency, stock, attributes } }
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
