import { describe, expect, it } from 'vitest'
import { MAX_RECORD_CHARS, readFeedRecords, type FeedRecord } from './read-feed-records.ts'

/** The feed's text cut into chunks of `size` bytes, as a network would. */
async function* chunked(text: string, size = 7): AsyncGenerator<Uint8Array> {
  const bytes = Buffer.from(text)
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size)
}

async function read(text: string, format: 'csv' | 'jsonl', size?: number): Promise<FeedRecord[]> {
  const out: FeedRecord[] = []
  for await (const r of readFeedRecords(chunked(text, size), format)) out.push(r)
  return out
}

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

  it('refuses a header without the required columns, and a record past the size bound', async () => {
    await expect(read('sku,name,price\na,A,1\n', 'csv')).rejects.toMatchObject({ code: 'feed_invalid_header' })
    await expect(read('', 'csv')).rejects.toMatchObject({ code: 'feed_invalid_header' })
    const huge = `sku,title,price,currency\na,"${'x'.repeat(MAX_RECORD_CHARS + 10)}",1,USD\n`
    await expect(read(huge, 'csv', 65_536)).rejects.toMatchObject({ code: 'feed_unreadable' })
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
    const feed = `{"sku":"a","title":"${'x'.repeat(MAX_RECORD_CHARS + 5)}","price":1,"currency":"USD"}\n{"sku":"b","title":"B","price":1,"currency":"USD"}\n`
    const records = await read(feed, 'jsonl', 65_536)
    expect(summary(records)).toEqual([
      [1, 'bad', 'jsonl'],
      [2, 'b'],
    ])
  })
})
