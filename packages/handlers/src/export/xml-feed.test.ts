import { describe, expect, it } from 'vitest'
import type { FeedProduct } from './feed-product.ts'
import { createXmlFeed, escapeXml } from './xml-feed.ts'

const product: FeedProduct = { sku: 'A-1', title: 'Mug', description: 'Blue', price: '12.50', currency: 'EUR', stock: 3 }

describe('escapeXml', () => {
  it('escapes the markup characters and keeps unicode', () => {
    expect(escapeXml(`Fish & <Chips> "quoted" 'single'`)).toBe('Fish &amp; &lt;Chips&gt; &quot;quoted&quot; &apos;single&apos;')
    expect(escapeXml('Tasse à café ☕ 日本 😀')).toBe('Tasse à café ☕ 日本 😀')
    expect(escapeXml('&amp;')).toBe('&amp;amp;')
  })

  it('drops characters XML 1.0 forbids and keeps tab and LF', () => {
    expect(escapeXml('a\u0000b\u0008c\u000Bd\u000Ce\u001Ff')).toBe('abcdef')
    expect(escapeXml('x\uFFFEy\uFFFFz')).toBe('xyz')
    expect(escapeXml('\uDC00lone\uD83D')).toBe('lone')
    expect(escapeXml('a\tb\nc')).toBe('a\tb\nc')
  })

  it('writes CR as a character reference so parsers keep it', () => {
    expect(escapeXml('a\r\nb')).toBe('a&#13;\nb')
  })
})

describe('createXmlFeed', () => {
  it('writes an RSS 2.0 channel with Merchant g: elements per item', () => {
    const feed = createXmlFeed({ title: 'Shop & Co', description: 'All products' })
    const text = feed.header() + feed.item(product) + feed.item({ ...product, sku: 'B<2>', stock: 0 }) + feed.footer()
    expect(text).toBe(
      '<?xml version="1.0" encoding="UTF-8"?>\n' +
        '<rss version="2.0" xmlns:g="http://base.google.com/ns/1.0">\n<channel>\n' +
        '<title>Shop &amp; Co</title>\n<description>All products</description>\n' +
        '<item><g:id>A-1</g:id><title>Mug</title><description>Blue</description><g:price>12.50 EUR</g:price><g:availability>in stock</g:availability></item>\n' +
        '<item><g:id>B&lt;2&gt;</g:id><title>Mug</title><description>Blue</description><g:price>12.50 EUR</g:price><g:availability>out of stock</g:availability></item>\n' +
        '</channel>\n</rss>\n',
    )
    expect(feed.contentType).toBe('application/xml')
  })
})
