import { PermanentError } from '@backroom/queue-core'
import { parseProductRow, ROW_LIMITS, type ParsedRow, type RejectedRow } from './parse-product-row.ts'
import { splitCsvRecords, type CsvRecord } from './split-csv-records.ts'
import { splitLines } from './split-lines.ts'
import { unstorableCharacter } from './storable-text.ts'
import { withoutBom } from './without-bom.ts'
import type { FeedFormat, RowErrorCode } from '../import-tables.ts'

/** One data record of a feed: its line and what validation made of it. */
export interface FeedRecord {
  /** 1-based line of the feed where the record starts (CSV: the header is line 1). */
  readonly line: number
  readonly parsed: ParsedRow
}

/**
 * The longest record (CSV) or line (JSONL) read, in bytes. A longer one is
 * reported as a bad row (`row_too_large`) and read past without being held:
 * memory stays bounded by this whatever the feed holds, e.g. a quote never closed.
 */
export const MAX_RECORD_BYTES = 1024 * 1024

/**
 * The longest CSV header, in bytes, and its most columns: product feeds have
 * tens of columns, and a header past these bounds is refused as soon as the
 * reader passes them (`feed_invalid_header`), before any row is read.
 */
export const MAX_HEADER_BYTES = 64 * 1024
export const MAX_COLUMNS = 1_000

/**
 * The most bytes of feed read, by default: past it the import fails
 * (`feed_too_large`). Counted after any decompression (fetch undoes a
 * `Content-Encoding: gzip` body), so a small compressed body cannot make a
 * worker read without end; it also keeps line numbers within int4.
 */
export const DEFAULT_MAX_FEED_BYTES = 512 * 1024 * 1024

/** CSV columns with a meaning; any other column becomes an attribute. */
const KNOWN_COLUMNS = ['sku', 'title', 'description', 'price', 'currency', 'stock'] as const
const REQUIRED_COLUMNS = ['sku', 'title', 'price', 'currency'] as const
/** Duplicate column names quoted in a refusal. */
const DUPLICATES_LISTED = 20

/**
 * Reads a feed's bytes as records, one at a time, with memory bounded by
 * one input chunk plus one record (MAX_RECORD_BYTES): never the whole feed.
 * Bad records, including lines too long, bytes that are not UTF-8 and text
 * PostgreSQL cannot store, come out as data (`parsed.ok === false`, with a
 * code) in line order, so the caller can record them with their line; only
 * a feed whose structure is unusable throws a PermanentError
 * (`feed_invalid_header`), as does one longer than `maxFeedBytes`
 * (`feed_too_large`, default DEFAULT_MAX_FEED_BYTES). Work per record is
 * linear in its size.
 */
export function readFeedRecords(
  bytes: AsyncIterable<Uint8Array>,
  format: FeedFormat,
  options: { readonly maxFeedBytes?: number } = {},
): AsyncGenerator<FeedRecord> {
  const capped = withoutBom(upTo(bytes, options.maxFeedBytes ?? DEFAULT_MAX_FEED_BYTES))
  return format === 'csv' ? csvRecords(capped) : jsonlRecords(capped)
}

/** The bytes, failing the import as soon as more than `maxBytes` have come. */
async function* upTo(bytes: AsyncIterable<Uint8Array>, maxBytes: number): AsyncGenerator<Uint8Array> {
  let total = 0
  for await (const chunk of bytes) {
    total += chunk.length
    if (total > maxBytes) {
      throw new PermanentError('feed_too_large', {
        message: `the feed is larger than ${maxBytes} bytes (after decompression)`,
        details: { limitBytes: maxBytes },
      })
    }
    yield chunk
  }
}

async function* csvRecords(bytes: AsyncIterable<Uint8Array>): AsyncGenerator<FeedRecord> {
  let header: CsvHeader | null = null
  // One field past the column bound is kept, so a header over it is seen as such.
  const limits = { maxRecordBytes: MAX_RECORD_BYTES, maxFirstRecordBytes: MAX_HEADER_BYTES, maxFields: MAX_COLUMNS + 1 }
  for await (const record of splitCsvRecords(bytes, limits)) {
    if (header === null) header = readHeader(record)
    else yield { line: record.line, parsed: csvRow(header, record) }
  }
  if (header === null) throw new PermanentError('feed_invalid_header', { message: 'the CSV feed is empty: it has no header row' })
}

interface CsvHeader {
  readonly names: ReadonlyArray<string>
  readonly index: Readonly<Record<(typeof KNOWN_COLUMNS)[number], number>>
  /** Columns that become attributes: [position, name]. */
  readonly extra: ReadonlyArray<readonly [number, string]>
}

function invalidHeader(message: string, details: Record<string, unknown>): PermanentError {
  return new PermanentError('feed_invalid_header', { message: `the CSV header is unusable: ${message}`, details })
}

/** Checks the header in time linear in its size (it is bounded: MAX_HEADER_BYTES, MAX_COLUMNS). */
function readHeader(record: CsvRecord): CsvHeader {
  if (record.flaw === 'too_large') {
    throw invalidHeader(`it is longer than ${MAX_HEADER_BYTES} bytes`, { limitBytes: MAX_HEADER_BYTES })
  }
  if (record.fieldCount > MAX_COLUMNS) {
    throw invalidHeader(`it has ${record.fieldCount} columns, more than ${MAX_COLUMNS}`, { columns: record.fieldCount, limit: MAX_COLUMNS })
  }
  if (record.flaw === 'not_utf8') throw invalidHeader('it is not UTF-8 text', { flaw: record.flaw })
  if (record.flaw !== null) throw invalidHeader('a quote in it is misplaced or never closed', { flaw: record.flaw })
  const names = record.fields.map((c) => c.trim())
  const lower = names.map((n) => n.toLowerCase())
  const seen = new Set<string>()
  const duplicate = new Set<string>()
  for (const name of lower) {
    if (seen.has(name)) duplicate.add(name)
    seen.add(name)
  }
  const missing = REQUIRED_COLUMNS.filter((c) => !seen.has(c))
  const empty = seen.has('')
  const unstorable = names.some((n) => unstorableCharacter(n) !== null)
  if (missing.length > 0 || duplicate.size > 0 || empty || unstorable) {
    const listed = [...duplicate].slice(0, DUPLICATES_LISTED)
    const problems = [
      missing.length > 0 ? `missing column(s) ${missing.join(', ')}` : '',
      duplicate.size > 0 ? `duplicate column(s) ${listed.join(', ')}${duplicate.size > listed.length ? ` and ${duplicate.size - listed.length} more` : ''}` : '',
      empty ? 'a column without a name' : '',
      unstorable ? 'a column name with a NUL character' : '',
    ].filter(Boolean)
    throw invalidHeader(problems.join('; '), { missing, duplicate: listed, required: REQUIRED_COLUMNS })
  }
  const index = Object.fromEntries(KNOWN_COLUMNS.map((c) => [c, lower.indexOf(c)])) as CsvHeader['index']
  const known = new Set<number>(Object.values(index))
  const extra = names.flatMap((name, i) => (known.has(i) ? [] : [[i, name] as const]))
  return { names, index, extra }
}

function csvRow(header: CsvHeader, record: CsvRecord): ParsedRow {
  const cells = record.fields
  const cell = (i: number): string | undefined => (i < 0 ? undefined : cells[i])
  const skuCell = cell(header.index.sku)?.trim()
  const bad = (code: RowErrorCode, reason: string): RejectedRow => ({ ok: false, code, reason, sku: skuCell && skuCell.length <= ROW_LIMITS.sku ? skuCell : null })
  switch (record.flaw) {
    case 'too_large':
      return bad('row_too_large', `csv: the row is longer than ${MAX_RECORD_BYTES} bytes`)
    case 'quote_not_closed':
      return bad('malformed_row', `csv: quote opened on this line is never closed (the feed ends at line ${record.endLine})`)
    case 'not_utf8':
      return bad('invalid_encoding', 'encoding: the row has bytes that are not UTF-8 (the feed must be UTF-8)')
    case 'text_after_quote':
      return bad('malformed_row', 'csv: a quoted field has text after its closing quote')
    default:
  }
  if (record.fieldCount !== header.names.length) {
    return bad('malformed_row', `csv: the row has ${record.fieldCount} fields, the header ${header.names.length}`)
  }
  const attributes: Record<string, string> = {}
  for (const [i, name] of header.extra) if (cells[i] !== '') attributes[name] = cells[i]!
  return parseProductRow({
    sku: cell(header.index.sku),
    title: cell(header.index.title),
    description: cell(header.index.description),
    price: cell(header.index.price),
    currency: cell(header.index.currency),
    stock: cell(header.index.stock),
    attributes,
  })
}

async function* jsonlRecords(bytes: AsyncIterable<Uint8Array>): AsyncGenerator<FeedRecord> {
  for await (const { line, text, flaw } of splitLines(bytes, MAX_RECORD_BYTES)) {
    if (text === null) {
      yield { line, parsed: { ok: false, code: 'row_too_large', reason: `jsonl: the line is longer than ${MAX_RECORD_BYTES} bytes`, sku: null } }
      continue
    }
    if (text.trim() === '') continue
    const parsed = jsonlRow(text)
    if (flaw === 'not_utf8') {
      // The SKU, when the line parsed all the same, helps find the line.
      const sku = parsed.ok ? parsed.row.sku : parsed.sku
      yield { line, parsed: { ok: false, code: 'invalid_encoding', reason: 'encoding: the line has bytes that are not UTF-8 (the feed must be UTF-8)', sku } }
    } else yield { line, parsed }
  }
}

function jsonlRow(text: string): ParsedRow {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return { ok: false, code: 'malformed_row', reason: 'jsonl: the line is not valid JSON', sku: null }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, code: 'malformed_row', reason: 'jsonl: the line is not a JSON object', sku: null }
  }
  const { sku, title, description, price, currency, stock, attributes, ...extra } = value as Record<string, unknown>
  if (attributes !== undefined && (typeof attributes !== 'object' || attributes === null || Array.isArray(attributes))) {
    const skuText = typeof sku === 'string' ? sku.trim() || null : null
    return { ok: false, code: 'invalid_field', reason: 'attributes: must be a JSON object', sku: skuText && skuText.length <= ROW_LIMITS.sku ? skuText : null }
  }
  return parseProductRow({ sku, title, description, price, currency, stock, attributes: { ...extra, ...(attributes as object | undefined) } })
}
