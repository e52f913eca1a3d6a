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

/** What a spreadsheet reads as the start of a formula (OWASP's list for CSV injection). */
const FORMULA_START = /^[=+\-@\t\r]/

/**
 * Text a spreadsheet will show as text: a value starting with `=`, `+`,
 * `-`, `@`, tab or CR gets a single quote in front (OWASP's advice against
 * CSV injection), which spreadsheets take as "text follows". Forbidden
 * characters are dropped first, so none can hide a formula behind it.
 *
 * @example neutralizeFormula('=HYPERLINK("http://x","y")') // `'=HYPERLINK("http://x","y")`
 */
export function neutralizeFormula(value: string): string {
  const text = stripInvalidCharacters(value)
  return FORMULA_START.test(text) ? `'${text}` : text
}

/**
 * The CSV feed: a header record, then one record per product. UTF-8, no BOM.
 *
 * Merchants open the feed in spreadsheets, and the text columns (id, title,
 * description) come from stores and their suppliers' feeds, so they are
 * neutralised against formulas; a SKU starting with one of those characters
 * goes out with the quote in front (the XML feed carries it as it is).
 * Price and availability are not: the feed writes them itself from typed
 * values (a numeric(14,2) that the table keeps >= 0, with its currency; a
 * fixed vocabulary), they never start with a formula character, and the
 * marketplace must read the price as the number it is.
 */
export const csvFeed: FeedWriter = {
  contentType: 'text/csv; charset=utf-8',
  header: () => CSV_COLUMNS.join(',') + EOL,
  item: (p: FeedProduct) =>
    [...[p.sku, p.title, p.description].map(neutralizeFormula), priceOf(p), availabilityOf(p.stock)].map(escapeCsvField).join(',') + EOL,
  footer: () => '',
}
