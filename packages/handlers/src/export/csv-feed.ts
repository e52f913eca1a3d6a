import { availabilityOf, priceOf, stripInvalidCharacters, type FeedProduct, type FeedWriter } from './feed-product.ts'

/** Columns of the CSV feed, in order (Google Merchant attribute names). */
export const CSV_COLUMNS = ['id', 'title', 'description', 'price', 'availability'] as const

/** RFC 4180 ends every record with CRLF, including the last. */
const EOL = '\r\n'

/**
 * One CSV field (RFC 4180): quoted when it holds a comma, a quote, CR or LF,
 * with quotes doubled; characters XML 1.0 forbids are dropped first.
 *
 * @example escapeCsvField('12" ruler, steel') // '"12"" ruler, steel"'
 */
export function escapeCsvField(value: string): string {
  const text = stripInvalidCharacters(value)
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text
}

/** The CSV feed: a header record, then one record per product. UTF-8, no BOM. */
export const csvFeed: FeedWriter = {
  contentType: 'text/csv; charset=utf-8',
  header: () => CSV_COLUMNS.join(',') + EOL,
  item: (p: FeedProduct) =>
    [p.sku, p.title, p.description, priceOf(p), availabilityOf(p.stock)].map(escapeCsvField).join(',') + EOL,
  footer: () => '',
}
