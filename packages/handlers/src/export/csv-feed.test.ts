import { describe, expect, it } from 'vitest'
import { csvFeed, escapeCsvField } from './csv-feed.ts'
import type { FeedProduct } from './feed-product.ts'

const product: FeedProduct = { sku: 'A-1', title: 'Mug', description: 'Blue', price: '12.50', currency: 'EUR', stock: 3 }

describe('escapeCsvField', () => {
  it('leaves plain text, unicode and tabs unquoted', () => {
    expect(escapeCsvField('Tasse à café ☕ 日本')).toBe('Tasse à café ☕ 日本')
    expect(escapeCsvField('a\tb')).toBe('a\tb')
    expect(escapeCsvField('')).toBe('')
  })

  it('quotes fields with commas, quotes, CR or LF and doubles the quotes', () => {
    expect(escapeCsvField('red, large')).toBe('"red, large"')
    expect(escapeCsvField('12" ruler')).toBe('"12"" ruler"')
    expect(escapeCsvField('line 1\nline 2')).toBe('"line 1\nline 2"')
    expect(escapeCsvField('line 1\r\nline 2')).toBe('"line 1\r\nline 2"')
    expect(escapeCsvField('"')).toBe('""""')
  })

  it('drops control characters but keeps astral characters whole', () => {
    expect(escapeCsvField('a\u0000b\u0007c\u001Fd\u000Ce')).toBe('abcde')
    expect(escapeCsvField('\uD800lone')).toBe('lone')
    expect(escapeCsvField('emoji 😀')).toBe('emoji 😀')
  })
})

describe('csvFeed', () => {
  it('writes a header and one CRLF-terminated record per product', () => {
    const text = csvFeed.header() + csvFeed.item(product) + csvFeed.item({ ...product, sku: 'B,2', stock: 0 }) + csvFeed.footer()
    expect(text).toBe('id,title,description,price,availability\r\nA-1,Mug,Blue,12.50 EUR,in stock\r\n"B,2",Mug,Blue,12.50 EUR,out of stock\r\n')
  })

  it('counts untracked stock (null) as in stock', () => {
    expect(csvFeed.item({ ...product, stock: null })).toContain(',in stock\r\n')
  })
})

describe('csvFeed and spreadsheet formulas', () => {
  it('prefixes a single quote to a text cell a spreadsheet would read as a formula (=, +, -, @, tab, CR first)', () => {
    const cells = (p: FeedProduct) => csvFeed.item(p)
    expect(cells({ ...product, sku: '=1+1', title: '+SUM(A1:A9)', description: '-2+3' })).toBe("'=1+1,'+SUM(A1:A9),'-2+3,12.50 EUR,in stock\r\n")
    expect(cells({ ...product, title: '@SUM(1)', description: '\t=1' })).toBe("A-1,'@SUM(1),'\t=1,12.50 EUR,in stock\r\n")
    // Quoting still applies around the neutralised text.
    expect(cells({ ...product, title: '=HYPERLINK("http://x.example","y")', description: '\r=1' })).toBe(
      `A-1,"'=HYPERLINK(""http://x.example"",""y"")","'\r=1",12.50 EUR,in stock\r\n`,
    )
    // A character dropped as invalid does not hide a formula behind it.
    expect(cells({ ...product, title: '\u0000=1' })).toBe("A-1,'=1,Blue,12.50 EUR,in stock\r\n")
  })

  it('leaves other text, and the price and availability it writes itself, as they are', () => {
    expect(csvFeed.item({ ...product, title: 'Mug = cup', description: ' =1 after a space', price: '0.00' })).toBe('A-1,Mug = cup, =1 after a space,0.00 EUR,in stock\r\n')
  })
})
