/** One catalogue row as a feed needs it (read from `shop.products`). */
export interface FeedProduct {
  readonly sku: string
  readonly title: string
  readonly description: string
  /** numeric(14,2) as PostgreSQL prints it ("12.50"): exact, never a float. */
  readonly price: string
  /** ISO 4217 code. */
  readonly currency: string
  /** Units on hand; null when the store does not track stock. */
  readonly stock: number | null
}

/** Availability values of the Google Merchant vocabulary that a catalogue row can express. */
export const AVAILABILITIES = ['in stock', 'out of stock'] as const
export type Availability = (typeof AVAILABILITIES)[number]

/** Writes one feed format piece by piece, so a feed of any size is built in constant memory. */
export interface FeedWriter {
  /** Sent as the upload's Content-Type. */
  readonly contentType: string
  /** What comes before the first product. */
  header(): string
  /** One product, already escaped for the format. */
  item(product: FeedProduct): string
  /** What comes after the last product. */
  footer(): string
}

/**
 * A store that does not track stock (null) sells what it lists, so its
 * products count as in stock; tracked stock is in stock above zero.
 */
export function availabilityOf(stock: number | null): Availability {
  return stock === null || stock > 0 ? 'in stock' : 'out of stock'
}

/** "12.50 EUR": the Merchant price form, amount as stored (two decimals) and the currency code. */
export function priceOf(product: Pick<FeedProduct, 'price' | 'currency'>): string {
  return `${product.price} ${product.currency.trim().toUpperCase()}`
}

/**
 * Characters XML 1.0 forbids: C0 controls other than tab, LF and CR, lone
 * surrogates, U+FFFE and U+FFFF. Catalogue text pasted from other systems
 * does carry them (form feeds, NULs), and one of them makes a whole XML feed
 * unparseable; CSV consumers choke on them too, so both formats drop them.
 */
const INVALID_TEXT = /[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu

/** `text` without the characters XML 1.0 forbids (see INVALID_TEXT). */
export function stripInvalidCharacters(text: string): string {
  return text.replace(INVALID_TEXT, '')
}
