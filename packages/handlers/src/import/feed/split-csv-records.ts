import { isUtf8 } from 'node:buffer'

/** What can be wrong with a record as a whole, before its fields are looked at. */
export type CsvFlaw = 'too_large' | 'not_utf8' | 'quote_not_closed' | 'text_after_quote'

/** One CSV record, found by {@link splitCsvRecords}. */
export interface CsvRecord {
  /** 1-based line of the feed where the record starts. */
  readonly line: number
  /** Line where it ends (greater than `line` when a quoted field holds line breaks). */
  readonly endLine: number
  /**
   * The fields, decoded as UTF-8 (bytes that are not UTF-8 read as U+FFFD,
   * and the record is flawed `not_utf8`); at most `maxFields` of them, and
   * none when the record is `too_large`.
   */
  readonly fields: ReadonlyArray<string>
  /** How many fields the record has, kept or not. */
  readonly fieldCount: number
  readonly flaw: CsvFlaw | null
}

/** Bounds that keep the splitter's memory small whatever the input. */
export interface CsvLimits {
  /** Bytes of one record, quotes and separators included: past it the record is skipped, not kept. */
  readonly maxRecordBytes: number
  /** Bytes of the first record (the header): past it the splitter reports it at once and stops reading. */
  readonly maxFirstRecordBytes: number
  /** Fields kept per record; further fields are counted only. */
  readonly maxFields: number
}

const QUOTE = 0x22
const COMMA = 0x2c
const LF = 0x0a
const CR = 0x0d

/** Scanner states: where the next byte falls. */
const FIELD_START = 0
const UNQUOTED = 1
const QUOTED = 2
/** After a quote inside a quoted field: its end, or the first of a doubled quote. */
const QUOTE_SEEN = 3

/**
 * Splits CSV bytes (RFC 4180, UTF-8) into records in one pass over the
 * bytes, with memory bounded by `limits.maxRecordBytes` whatever the input:
 * a record over the bound is read through to its end (quotes still
 * tracked, so a line break inside a quoted field ends nothing) without
 * being kept, and comes out flawed `too_large`. Every structural byte is
 * ASCII, so the bytes are split before they are decoded, and a record whose
 * bytes are not UTF-8 is known as such.
 *
 * Dialect: comma separated; records end at LF, CRLF or CR; a quote opens a
 * quoted field only at the field's start (elsewhere it is text), where `""`
 * is a quote; empty lines are skipped. A quote never closed makes the rest
 * of the feed one record, flawed `quote_not_closed` (or `too_large`).
 */
export async function* splitCsvRecords(bytes: AsyncIterable<Uint8Array>, limits: CsvLimits): AsyncGenerator<CsvRecord> {
  const scanner = new CsvScanner(limits)
  for await (const chunk of bytes) {
    yield* scanner.push(chunk)
    if (scanner.stopped) return
  }
  yield* scanner.end()
}

class CsvScanner {
  stopped = false
  private readonly limits: CsvLimits
  private state = FIELD_START
  /** The current record's field bytes, quotes undone; grows up to maxRecordBytes. */
  private buf = Buffer.allocUnsafe(4096)
  private len = 0
  /** End offsets in `buf` of the current record's finished fields (at most maxFields). */
  private ends: number[] = []
  private fieldCount = 0
  private started = false
  private recordBytes = 0
  private recordLine = 1
  private flaw: CsvFlaw | null = null
  private records = 0
  /** Line of the byte being read: breaks seen so far + 1 (CRLF is one break). */
  private line = 1
  private lastWasCr = false
  private lastWasBreak = false
  private out: CsvRecord[] = []

  constructor(limits: CsvLimits) {
    this.limits = limits
  }

  push(chunk: Uint8Array): CsvRecord[] {
    for (let i = 0; i < chunk.length && !this.stopped; i++) {
      const b = chunk[i]!
      if (this.started || (b !== LF && b !== CR)) {
        if (!this.started) {
          this.started = true
          this.recordLine = this.line
        }
        if (++this.recordBytes > this.max()) this.overflow()
      }
      switch (this.state) {
        case FIELD_START:
          if (b === QUOTE) this.state = QUOTED
          else if (b === COMMA) this.endField()
          else if (b === LF || b === CR) this.endRecord()
          else {
            this.state = UNQUOTED
            this.put(b)
          }
          break
        case UNQUOTED:
          if (b === COMMA) this.endField()
          else if (b === LF || b === CR) this.endRecord()
          else this.put(b)
          break
        case QUOTED:
          if (b === QUOTE) this.state = QUOTE_SEEN
          else this.put(b)
          break
        default:
          if (b === QUOTE) {
            this.put(QUOTE)
            this.state = QUOTED
          } else if (b === COMMA) this.endField()
          else if (b === LF || b === CR) this.endRecord()
          else {
            // `"a"b`: kept as text, but the record is reported, not guessed at.
            this.flaw ??= 'text_after_quote'
            this.put(b)
            this.state = UNQUOTED
          }
      }
      // Counted after the byte is placed, so a break belongs to the line it ends.
      if (b === LF) {
        if (!this.lastWasCr) this.line++
      } else if (b === CR) this.line++
      this.lastWasCr = b === CR
      this.lastWasBreak = b === LF || b === CR
    }
    return this.out.splice(0)
  }

  /** The feed ended: its last record, even without a line break. */
  end(): CsvRecord[] {
    if (!this.stopped && this.started) {
      if (this.state === QUOTED && this.flaw !== 'too_large') this.flaw = 'quote_not_closed'
      this.endRecord(this.lastWasBreak ? this.line - 1 : this.line)
    }
    return this.out.splice(0)
  }

  private max(): number {
    return this.records === 0 ? this.limits.maxFirstRecordBytes : this.limits.maxRecordBytes
  }

  private overflow(): void {
    if (this.flaw === 'too_large') return
    this.flaw = 'too_large'
    this.len = 0
    this.ends = []
    if (this.records === 0) {
      // The header is not read to its end: the feed is refused on it anyway.
      this.out.push({ line: this.recordLine, endLine: this.line, fields: [], fieldCount: this.fieldCount, flaw: 'too_large' })
      this.stopped = true
    }
  }

  private put(b: number): void {
    if (this.flaw === 'too_large') return
    if (this.len === this.buf.length) {
      const bigger = Buffer.allocUnsafe(Math.min(this.buf.length * 2, this.limits.maxRecordBytes + 1))
      this.buf.copy(bigger, 0, 0, this.len)
      this.buf = bigger
    }
    this.buf[this.len++] = b
  }

  private endField(): void {
    this.fieldCount++
    if (this.flaw !== 'too_large' && this.ends.length < this.limits.maxFields) this.ends.push(this.len)
    this.state = FIELD_START
  }

  /** Ends the record in progress; `endLine` defaults to the line of the break that ends it. */
  private endRecord(endLine = this.line): void {
    this.state = FIELD_START
    if (!this.started) return
    this.endField()
    let fields: string[] = []
    let flaw = this.flaw
    if (flaw !== 'too_large') {
      const bytes = this.buf.subarray(0, this.len)
      // Bad bytes outweigh a stray quote: text that is not UTF-8 cannot be judged further.
      if ((flaw === null || flaw === 'text_after_quote') && !isUtf8(bytes)) flaw = 'not_utf8'
      let start = 0
      fields = this.ends.map((end) => {
        const text = bytes.toString('utf8', start, end)
        start = end
        return text
      })
    }
    this.out.push({ line: this.recordLine, endLine, fields, fieldCount: this.fieldCount, flaw })
    this.records++
    this.started = false
    this.recordBytes = 0
    this.fieldCount = 0
    this.len = 0
    this.ends = []
    this.flaw = null
    // A record that needed a big buffer does not keep it.
    if (this.buf.length > 65_536) this.buf = Buffer.allocUnsafe(4096)
  }
}
