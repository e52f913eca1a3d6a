import { availabilityOf, priceOf, stripInvalidCharacters, type FeedProduct, type FeedWriter } from './feed-product.ts'

/** The Google Merchant namespace that `g:` elements belong to. */
export const MERCHANT_NAMESPACE = 'http://base.google.com/ns/1.0'

/** What the feed says about itself in its `<channel>`. */
export interface XmlChannel {
  readonly title: string
  readonly description: string
}

/**
 * Text for XML 1.0 element content or attribute values: forbidden characters
 * dropped, markup characters escaped, and CR written as a character
 * reference (a parser would otherwise turn CRLF into LF and change the text).
 *
 * @example escapeXml('Fish & <Chips>') // 'Fish &amp; &lt;Chips&gt;'
 */
export function escapeXml(value: string): string {
  return stripInvalidCharacters(value).replace(/[&<>"'\r]/g, (c) => XML_ESCAPES[c]!)
}

const XML_ESCAPES: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&apos;',
  '\r': '&#13;',
}

const element = (name: string, text: string) => `<${name}>${escapeXml(text)}</${name}>`

/**
 * An RSS 2.0 product feed in the Google Merchant style: one `<item>` per
 * product with `g:id`, `title`, `description`, `g:price` ("12.50 EUR") and
 * `g:availability`. The catalogue holds no product URLs, so items carry no
 * `link` (nor does the channel).
 */
export function createXmlFeed(channel: XmlChannel): FeedWriter {
  return {
    // The encoding is declared in the XML declaration itself.
    contentType: 'application/xml',
    header: () =>
      '<?xml version="1.0" encoding="UTF-8"?>\n' +
      `<rss version="2.0" xmlns:g="${MERCHANT_NAMESPACE}">\n<channel>\n` +
      `${element('title', channel.title)}\n${element('description', channel.description)}\n`,
    item: (p: FeedProduct) =>
      '<item>' +
      element('g:id', p.sku) +
      element('title', p.title) +
      element('description', p.description) +
      element('g:price', priceOf(p)) +
      element('g:availability', availabilityOf(p.stock)) +
      '</item>\n',
    footer: () => '</channel>\n</rss>\n',
  }
}
