import { Readable } from 'node:stream'
import { createGunzip, gzipSync } from 'node:zlib'
import { describe, expect, it } from 'vitest'
import { DEFAULT_MAX_FEED_BYTES, MAX_COLUMNS, MAX_HEADER_BYTES, MAX_RECORD_BYTES, readFeedRecords, type FeedRecord } from './read-feed-records.ts'

/** The feed's text cut into chunks of `size` bytes, as a network would. */
async function* chunked(text: string | Buffer, size = 7): AsyncGenerator<Uint8Array> {
  const bytes = Buffer.isBuffer(text) ? text : Buffer.from(text)
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size)
}

async function read(text: string | Buffer, format: 'csv' | 'jsonl', size?: number): Promise<FeedRecord[]> {
  const out: FeedRecord[] = []
  for await (const r of readFeedRecords(chunked(text, size), format)) out.push(r)
  return out
}

/** `[line, code]` of every record: 'ok' for a valid row, the error's code otherwise. */
const codes = (records: ReadonlyArray<FeedRecord>) => records.map((r) => [r.line, r.parsed.ok ? 'ok' : r.parsed.code])

const summary = (records: ReadonlyArray<FeedRecord>) =>
  records.map((r) => (r.parsed.ok ? [r.line, r.parsed.row.sku] : [r.line, 'bad', r.parsed.reason.split(':')[0]]))

describe('readFeedRecords (csv)', () => {
  it('reads rows with their line numbers, extra columns as attributes, and reports bad rows in order', async () => {
    const feed = [
      '\ufeffSKU,title,description,price,currency,stock,colour',
      'a-1,Alpha,"first, with comma",9.99,eur,3,red',
      '',
      'b-2,"Beta ""quoted""","two\nlines",10,USD,,',
      'c-3,Gamma,,abc,USD,1,',
      'd-4,Delta,,1.5,USD',
      'e-5,Ep"silon,,2,USD,0,blue',
    ].join('\r\n')
    // Records end with CRLF, as spreadsheets write them; the quoted cell breaks with LF.
    const records = await read(feed, 'csv')
    expect(summary(records)).toEqual([
      [2, 'a-1'],
      [4, 'b-2'],
      [6, 'bad', 'price'],
      [7, 'bad', 'csv'],
      [8, 'e-5'],
    ])
    const first = records[0]!.parsed
    expect(first.ok && first.row).toEqual({
      sku: 'a-1', title: 'Alpha', description: 'first, with comma', price: '9.99', currency: 'EUR', stock: 3, attributes: '{"colour":"red"}',
    })
    const second = records[1]!.parsed
    expect(second.ok && [second.row.title, second.row.description, second.row.stock]).toEqual(['Beta "quoted"', 'two\nlines', null])
    expect(records[2]!.parsed).toMatchObject({ ok: false, sku: 'c-3' })
  })

  it('reports a quote never closed as one bad line and keeps the rows before it', async () => {
    const records = await read('sku,title,price,currency\na,A,1,USD\nb,"B,2,USD\nc,C,3,USD\n', 'csv')
    expect(summary(records)).toEqual([
      [2, 'a'],
      [3, 'bad', 'csv'],
    ])
  })

  it('refuses a header without the required columns', async () => {
    await expect(read('sku,name,price\na,A,1\n', 'csv')).rejects.toMatchObject({ code: 'feed_invalid_header' })
    await expect(read('', 'csv')).rejects.toMatchObject({ code: 'feed_invalid_header' })
  })
})

describe('readFeedRecords (jsonl)', () => {
  it('reads one object per line, skips blank lines, and reports bad lines with their number', async () => {
    const feed = [
      '{"sku":"a","title":"A","price":1.5,"currency":"USD","stock":2,"brand":"x","attributes":{"size":"M"}}',
      '',
      '{"sku":"b","title":"B","price":"2.00","currency":"EUR"}',
      '{"sku":"c","title":"C",',
      '[1,2]',
      '{"sku":"d","title":"D","price":-1,"currency":"EUR"}',
      '{"sku":"e","title":"E","price":3,"currency":"EUR","stock":1.5}',
      '{"sku":"f","title":"F","price":3,"currency":"EUR"}',
    ].join('\n')
    const records = await read(feed, 'jsonl')
    expect(summary(records)).toEqual([
      [1, 'a'],
      [3, 'b'],
      [4, 'bad', 'jsonl'],
      [5, 'bad', 'jsonl'],
      [6, 'bad', 'price'],
      [7, 'bad', 'stock'],
      [8, 'f'],
    ])
    const first = records[0]!.parsed
    expect(first.ok && JSON.parse(first.row.attributes)).toEqual({ brand: 'x', size: 'M' })
  })

  it('reports a line over the size bound and carries on with the next', async () => {
    const feed = `{"sku":"a","title":"${'x'.repeat(MAX_RECORD_BYTES + 5)}","price":1,"currency":"USD"}\n{"sku":"b","title":"B","price":1,"currency":"USD"}\n`
    const records = await read(feed, 'jsonl', 65_536)
    expect(summary(records)).toEqual([
      [1, 'bad', 'jsonl'],
      [2, 'b'],
    ])
  })
})

describe('readFeedRecords: hostile and broken input', () => {
  const HEAD = 'sku,title,description,price,currency,stock\r\n'

  it('turns a CSV row with bad bytes, a NUL, an oversized field or a broken structure into an error row and reads on', async () => {
    const feed = Buffer.concat([
      Buffer.from(`\ufeff${HEAD}`),
      Buffer.from('ok-1,One,,1.00,EUR,1\r\n'),
      Buffer.from('nul-\u0000,Nul,,1.00,EUR,1\r\n'),
      Buffer.from('latin1,Caf'), Buffer.from([0xe9]), Buffer.from(',,1.00,EUR,1\r\n'),
      Buffer.from(`long,${'t'.repeat(1_001)},,1.00,EUR,1\r\n`),
      Buffer.from('ok-2,Two,"two\r\nlines",2.00,EUR,2\r\n'),
      Buffer.from('after,"A"B,,1.00,EUR,1\r\n'),
      Buffer.from('many,M,,1.00,EUR,1,extra\r\n'),
      Buffer.from('ok-3,Three,,3.00,EUR,3\r\n'),
      // The feed is cut off in the middle of its last line.
      Buffer.from('trunc,Trunc,,4.'),
    ])
    for (const size of [1, 7, 65_536]) {
      const records = await read(feed, 'csv', size)
      expect(codes(records), `pieces of ${size}`).toEqual([
        [2, 'ok'],
        [3, 'invalid_character'],
        [4, 'invalid_encoding'],
        [5, 'field_too_large'],
        [6, 'ok'],
        [8, 'malformed_row'],
        [9, 'malformed_row'],
        [10, 'ok'],
        [11, 'malformed_row'],
      ])
      // The BOM is no part of the first column's name; quoted CRLF stays in the text.
      expect(records[0]!.parsed).toMatchObject({ ok: true, row: { sku: 'ok-1', title: 'One' } })
      expect(records[4]!.parsed).toMatchObject({ ok: true, row: { description: 'two\r\nlines' } })
      // A row with bad bytes elsewhere still names its SKU.
      expect(records[2]!.parsed).toMatchObject({ ok: false, sku: 'latin1', reason: expect.stringMatching(/UTF-8/) })
      expect(records[3]!.parsed).toMatchObject({ ok: false, sku: 'long', reason: expect.stringMatching(/^title: longer than 1000 characters/) })
    }
  })

  it('reports a multibyte character cut off at the end of the feed as a bad encoding', async () => {
    const feed = Buffer.concat([Buffer.from(`${HEAD}ok,OK,,1,EUR,1\ncut,Caf`), Buffer.from([0xc3])])
    expect(codes(await read(feed, 'csv'))).toEqual([
      [2, 'ok'],
      [3, 'invalid_encoding'],
    ])
  })

  it('reports a CSV row over the size bound as row_too_large without holding it, and reads on', async () => {
    // 64 MiB in one quoted field with line breaks in it (which end no
    // record), in 1 MiB pieces; a reader that kept the field would hold it all.
    const piece = Buffer.from(`${'x'.repeat(65_535)}\n`.repeat(16))
    const pieces = 64
    let peak = 0
    const baseline = process.memoryUsage()
    async function* feed(): AsyncGenerator<Uint8Array> {
      yield Buffer.from(`${HEAD}big,"`)
      for (let i = 0; i < pieces; i++) {
        const m = process.memoryUsage()
        peak = Math.max(peak, m.heapUsed + m.arrayBuffers - baseline.heapUsed - baseline.arrayBuffers)
        yield piece
      }
      yield Buffer.from('",,1.00,EUR,1\r\nok,OK,,1.00,EUR,1\r\n')
    }
    const records: FeedRecord[] = []
    for await (const r of readFeedRecords(feed(), 'csv')) records.push(r)
    const bigLines = pieces * 16
    expect(codes(records)).toEqual([
      [2, 'row_too_large'],
      [3 + bigLines, 'ok'],
    ])
    expect(records[0]!.parsed).toMatchObject({ ok: false, sku: null, reason: `csv: the row is longer than ${MAX_RECORD_BYTES} bytes` })
    expect(peak).toBeLessThan(32 * 1024 * 1024)
  })

  it('refuses a header past its size bound as soon as it passes it, without reading the rest', async () => {
    // About 850 KB: 120,004 column names. Before the bound, finding duplicate
    // names compared every pair and held a worker's event loop for 13.9 s.
    const names = ['sku', 'title', 'price', 'currency', ...Array.from({ length: 120_000 }, (_, i) => `c${i}`)].join(',')
    const bytes = Buffer.from(`${names}\na,A,1,USD\n`)
    const piece = 16_384
    let pulled = 0
    async function* feed(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < bytes.length; i += piece) {
        pulled += piece
        yield bytes.subarray(i, i + piece)
      }
    }
    const started = performance.now()
    const consume = async () => {
      for await (const r of readFeedRecords(feed(), 'csv')) void r
    }
    await expect(consume()).rejects.toMatchObject({ code: 'feed_invalid_header', details: { limitBytes: MAX_HEADER_BYTES } })
    expect(pulled).toBeLessThanOrEqual(MAX_HEADER_BYTES + piece)
    // Generous: the bound is in bytes read, asserted above.
    expect(performance.now() - started).toBeLessThan(2_000)
  })

  it('refuses more than MAX_COLUMNS columns, and lists duplicate names of a header at the bound', async () => {
    const names = ['sku', 'title', 'price', 'currency', ...Array.from({ length: MAX_COLUMNS - 3 }, (_, i) => `c${i}`)]
    expect(names).toHaveLength(MAX_COLUMNS + 1)
    await expect(read(`${names.join(',')}\n`, 'csv', 65_536)).rejects.toMatchObject({
      code: 'feed_invalid_header',
      details: { columns: MAX_COLUMNS + 1, limit: MAX_COLUMNS },
    })
    const atBound = names.slice(0, MAX_COLUMNS)
    const row = ['a', 'A', '1', 'USD', ...Array.from({ length: MAX_COLUMNS - 4 }, () => '')]
    expect(codes(await read(`${atBound.join(',')}\n${row.join(',')}\n`, 'csv', 65_536))).toEqual([[2, 'ok']])
    const duplicated = [...atBound.slice(0, -2), 'C1', 'SKU']
    await expect(read(`${duplicated.join(',')}\n`, 'csv', 65_536)).rejects.toMatchObject({
      code: 'feed_invalid_header',
      details: { duplicate: ['c1', 'sku'] },
    })
  })

  it('refuses a header whose column names PostgreSQL could not store', async () => {
    await expect(read('sku,title,price,currency,co\u0000lour\na,A,1,USD,red\n', 'csv')).rejects.toMatchObject({ code: 'feed_invalid_header' })
  })

  it('turns a JSON line with bad bytes, lone surrogates, a NUL, deep nesting or a cut-off end into an error row and reads on', async () => {
    const row = (fields: object) => JSON.stringify({ title: 'T', price: 1, currency: 'EUR', ...fields })
    const depth = 100_000
    const feed = Buffer.concat([
      Buffer.from(`\ufeff${row({ sku: 'j-1' })}\r\n`),
      Buffer.from('{"sku":"j-2","title":"lone \\ud800 half","price":1,"currency":"EUR"}\r\n'),
      Buffer.from('{"sku":"j-3","title":"T","price":1,"currency":"EUR","colour":"\\udc00"}\n'),
      Buffer.from('{"sku":"j-\\u0000","title":"T","price":1,"currency":"EUR"}\n'),
      Buffer.from(`{"sku":"j-5","title":"T","price":1,"currency":"EUR","attributes":{"deep":${'['.repeat(depth)}${']'.repeat(depth)}}}\n`),
      Buffer.from('{"sku":"j-6","title":"Caf'), Buffer.from([0xc3, 0x28]), Buffer.from('","price":1,"currency":"EUR"}\n'),
      Buffer.from(`${row({ sku: 'j-7' })}\n`),
      Buffer.from('{"sku":"j-8","title":"cut off'),
    ])
    for (const size of [3, 65_536]) {
      const records = await read(feed, 'jsonl', size)
      expect(codes(records), `pieces of ${size}`).toEqual([
        [1, 'ok'],
        [2, 'invalid_character'],
        [3, 'invalid_character'],
        [4, 'invalid_character'],
        [5, 'field_too_large'],
        [6, 'invalid_encoding'],
        [7, 'ok'],
        [8, 'malformed_row'],
      ])
      expect(records[1]!.parsed).toMatchObject({ ok: false, sku: 'j-2' })
      expect(records[4]!.parsed).toMatchObject({ ok: false, sku: 'j-5', reason: expect.stringMatching(/^attributes: nested deeper than/) })
    }
  })
})

describe('readFeedRecords: size of the whole feed', () => {
  it('stops a gzip bomb at the bound on decompressed bytes, having read no more than that', async () => {
    // 64 MiB of rows packed into about 200 KB of gzip.
    const row = Buffer.from('bomb,Bomb,,1.00,EUR,1\n'.repeat(2_978))
    const inflated = Buffer.concat([Buffer.from('sku,title,description,price,currency,stock\n'), ...Array.from({ length: 1_024 }, () => row)])
    const gzip = gzipSync(inflated, { level: 9 })
    expect(gzip.length).toBeLessThan(inflated.length / 100)
    let pulled = 0
    async function* decompressed(): AsyncGenerator<Uint8Array> {
      for await (const chunk of Readable.from([gzip]).pipe(createGunzip())) {
        pulled += (chunk as Buffer).length
        yield chunk as Buffer
      }
    }
    const maxFeedBytes = 4 * 1024 * 1024
    let rows = 0
    const consume = async () => {
      for await (const r of readFeedRecords(decompressed(), 'csv', { maxFeedBytes })) if (r.parsed.ok) rows++
    }
    await expect(consume()).rejects.toMatchObject({ code: 'feed_too_large', details: { limitBytes: maxFeedBytes } })
    // Gunzip hands over 16 KiB at a time: reading stopped within one piece of the bound.
    expect(pulled).toBeLessThanOrEqual(maxFeedBytes + 64 * 1024)
    expect(rows).toBeGreaterThan(0)
    expect(rows * 22).toBeLessThanOrEqual(maxFeedBytes)
    expect(DEFAULT_MAX_FEED_BYTES).toBe(512 * 1024 * 1024)
  })
})
