import { PermanentError } from '@backroom/queue-core'
import { parse, type CsvError } from 'csv-parse'
import { parseProductRow, type ParsedRow } from './parse-product-row.ts'
import type { FeedFormat } from '../import-tables.ts'

/** One data record of a feed: its line and what validation made of it. */
export interface FeedRecord {
  /** 1-based line of the feed where the record starts (CSV: the header is line 1). */
  readonly line: number
  readonly parsed: ParsedRow
}

/**
 * The longest record (CSV) or line (JSONL) read, in characters. Memory stays
 * bounded by it whatever the feed holds, e.g. a quote never closed.
 */
export const MAX_RECORD_CHARS = 1024 * 1024

/** CSV columns with a meaning; any other column becomes an attribute. */
const KNOWN_COLUMNS = ['sku', 'title', 'description', 'price', 'currency', 'stock'] as const
const REQUIRED_COLUMNS = ['sku', 'title', 'price', 'currency'] as const

/**
 * Reads a feed's bytes as records, one at a time, with memory bounded by
 * one input chunk plus one record: never the whole feed. Bad records come
 * out as data (`parsed.ok === false`) in line order, so the caller can record
 * them with their line; only a feed whose structure is unusable throws a
 * PermanentError (`feed_invalid_header`, `feed_unreadable`).
 */
export function readFeedRecords(bytes: AsyncIterable<Uint8Array>, format: FeedFormat): AsyncGenerator<FeedRecord> {
  return format === 'csv' ? csvRecords(bytes) : jsonlRecords(bytes)
}

/** What the CSV parser hands over, in the order it met them. */
type CsvItem = { readonly kind: 'record'; readonly cells: string[]; readonly endLine: number } | { readonly kind: 'skip'; readonly err: CsvError }

async function* csvRecords(bytes: AsyncIterable<Uint8Array>): AsyncGenerator<FeedRecord> {
  // Records and parse errors are collected through callbacks rather than read
  // from the stream, so that both arrive in feed order: the caller's resume
  // point (the last line staged) must never pass a bad line not yet reported.
  const items: CsvItem[] = []
  const parser = parse({
    bom: true,
    skip_empty_lines: true,
    // A stray quote inside a field is kept as text: csv-parse's recovery from
    // a quote error otherwise loses the rest of its input chunk.
    relax_quotes: true,
    // Field counts are checked here, per row, with a clear reason.
    relax_column_count: true,
    skip_records_with_error: true,
    max_record_size: MAX_RECORD_CHARS,
    on_record(record: string[], context) {
      items.push({ kind: 'record', cells: record, endLine: context.lines })
      return undefined
    },
    on_skip(err) {
      if (err) items.push({ kind: 'skip', err })
      return undefined
    },
  })
  let failed: Error | null = null
  /** Resolves the write in flight: a parse error ends the stream without calling it back. */
  let settle: (() => void) | null = null
  parser.on('error', (err) => {
    failed = err
    settle?.()
  })
  const send = (chunk: Uint8Array | null) =>
    new Promise<void>((resolve) => {
      settle = resolve
      if (chunk === null) parser.end(() => resolve())
      else parser.write(chunk, () => resolve())
    })

  let header: CsvHeader | null = null
  let lastEnd = 0
  const drain = function* (): Generator<FeedRecord> {
    for (const item of items.splice(0)) {
      if (item.kind === 'skip') {
        // The only error left with relaxed quotes and column counts: a quote
        // opened and never closed swallowed the feed's end (bounded by
        // max_record_size, which is fatal below).
        if (item.err.code !== 'CSV_QUOTE_NOT_CLOSED') throw unreadable(item.err)
        const line = lastEnd + 1
        const end = Number(item.err.lines)
        lastEnd = end
        yield { line, parsed: { ok: false, reason: `csv: quote opened on this line is never closed (the feed ends at line ${end})`, sku: null } }
        continue
      }
      const newlines = item.cells.reduce((n, cell) => n + countNewlines(cell), 0)
      const line = item.endLine - newlines
      lastEnd = item.endLine
      if (header === null) {
        header = readHeader(item.cells)
        continue
      }
      yield { line, parsed: csvRow(header, item.cells) }
    }
  }

  try {
    for await (const chunk of bytes) {
      await send(chunk)
      if (failed) throw unreadable(failed)
      yield* drain()
    }
    await send(null)
    if (failed) throw unreadable(failed)
    yield* drain()
  } finally {
    parser.destroy()
  }
  if (header === null) throw new PermanentError('feed_invalid_header', { message: 'the CSV feed is empty: it has no header row' })
}

function countNewlines(text: string): number {
  let n = 0
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) n++
  return n
}

function unreadable(err: Error & { code?: string; lines?: unknown }): PermanentError {
  return new PermanentError('feed_unreadable', {
    message: `the feed cannot be read past line ${String(err.lines ?? '?')}: ${err.message}`,
    details: { line: typeof err.lines === 'number' ? err.lines : null, code: err.code ?? null },
    cause: err,
  })
}

interface CsvHeader {
  readonly names: ReadonlyArray<string>
  readonly index: Readonly<Record<(typeof KNOWN_COLUMNS)[number], number>>
}

function readHeader(cells: ReadonlyArray<string>): CsvHeader {
  const names = cells.map((c) => c.trim())
  const lower = names.map((n) => n.toLowerCase())
  const missing = REQUIRED_COLUMNS.filter((c) => !lower.includes(c))
  const duplicate = lower.filter((n, i) => lower.indexOf(n) !== i)
  const empty = names.some((n) => n === '')
  if (missing.length > 0 || duplicate.length > 0 || empty) {
    const problems = [
      missing.length > 0 ? `missing column(s) ${missing.join(', ')}` : '',
      duplicate.length > 0 ? `duplicate column(s) ${[...new Set(duplicate)].join(', ')}` : '',
      empty ? 'a column without a name' : '',
    ].filter(Boolean)
    throw new PermanentError('feed_invalid_header', {
      message: `the CSV header is unusable: ${problems.join('; ')}`,
      details: { missing, duplicate: [...new Set(duplicate)], required: REQUIRED_COLUMNS },
    })
  }
  const index = Object.fromEntries(KNOWN_COLUMNS.map((c) => [c, lower.indexOf(c)])) as CsvHeader['index']
  return { names, index }
}

function csvRow(header: CsvHeader, cells: ReadonlyArray<string>): ParsedRow {
  const cell = (i: number): string | undefined => (i < 0 ? undefined : cells[i])
  if (cells.length !== header.names.length) {
    const sku = cell(header.index.sku)?.trim() || null
    return { ok: false, reason: `csv: the row has ${cells.length} fields, the header ${header.names.length}`, sku }
  }
  const attributes: Record<string, string> = {}
  const known = new Set<number>(Object.values(header.index))
  header.names.forEach((name, i) => {
    if (!known.has(i) && cells[i] !== '') attributes[name] = cells[i]!
  })
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
  // Drops a leading byte-order mark by default.
  const decoder = new TextDecoder('utf-8')
  let buffered = ''
  let line = 0
  /** Inside a line longer than MAX_RECORD_CHARS: dropping text up to its end. */
  let overlong = false
  const tooLong = (at: number): FeedRecord => ({ line: at, parsed: { ok: false, reason: `jsonl: line longer than ${MAX_RECORD_CHARS} characters`, sku: null } })
  const take = function* (end: boolean): Generator<FeedRecord> {
    let start = 0
    for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n', start)) {
      line++
      if (overlong || nl - start > MAX_RECORD_CHARS) {
        overlong = false
        yield tooLong(line)
      } else {
        const record = jsonlRow(line, buffered.slice(start, nl))
        if (record) yield record
      }
      start = nl + 1
    }
    buffered = start === 0 ? buffered : buffered.slice(start)
    if (end) {
      if (overlong || buffered.length > MAX_RECORD_CHARS) yield tooLong(line + 1)
      else {
        const record = jsonlRow(line + 1, buffered)
        if (record) yield record
      }
      buffered = ''
    } else if (overlong || buffered.length > MAX_RECORD_CHARS) {
      overlong = true
      buffered = ''
    }
  }
  for await (const chunk of bytes) {
    buffered += decoder.decode(chunk, { stream: true })
    yield* take(false)
  }
  buffered += decoder.decode()
  yield* take(true)
}

function jsonlRow(line: number, text: string): FeedRecord | null {
  if (text.trim() === '') return null
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return { line, parsed: { ok: false, reason: 'jsonl: the line is not valid JSON', sku: null } }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { line, parsed: { ok: false, reason: 'jsonl: the line is not a JSON object', sku: null } }
  }
  const { sku, title, description, price, currency, stock, attributes, ...extra } = value as Record<string, unknown>
  if (attributes !== undefined && (typeof attributes !== 'object' || attributes === null || Array.isArray(attributes))) {
    const skuText = typeof sku === 'string' ? sku.trim() || null : null
    return { line, parsed: { ok: false, reason: 'attributes: must be a JSON object', sku: skuText } }
  }
  return { line, parsed: parseProductRow({ sku, title, description, price, currency, stock, attributes: { ...extra, ...(attributes as object | undefined) } }) }
}
