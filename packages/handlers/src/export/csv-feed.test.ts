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
