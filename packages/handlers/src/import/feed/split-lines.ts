import { isUtf8 } from 'node:buffer'

/** One line of a JSON Lines feed, found by {@link splitLines}. */
export interface TextLine {
  /** 1-based line number. */
  readonly line: number
  /**
   * The line's text without its LF, decoded as UTF-8 (bytes that are not
   * UTF-8 read as U+FFFD); null when the line is over the bound.
   */
  readonly text: string | null
  readonly flaw: 'too_large' | 'not_utf8' | null
}

/**
 * Splits bytes into LF-terminated lines with memory bounded by `maxLineBytes`
 * whatever the input: a longer line is read through to its end without being
 * kept and comes out flawed `too_large`. LF is never part of a multibyte
 * UTF-8 character, so lines are split before they are decoded, and a line
 * whose bytes are not UTF-8 is known as such. The last line needs no LF.
 */
export async function* splitLines(bytes: AsyncIterable<Uint8Array>, maxLineBytes: number): AsyncGenerator<TextLine> {
  let buf = Buffer.allocUnsafe(4096)
  let len = 0
  let tooLarge = false
  let line = 0
  let pending = false
  const append = (piece: Uint8Array) => {
    pending = true
    if (tooLarge) return
    if (len + piece.length > maxLineBytes) {
      tooLarge = true
      len = 0
      return
    }
    if (len + piece.length > buf.length) {
      const bigger = Buffer.allocUnsafe(Math.min(maxLineBytes, Math.max(buf.length * 2, len + piece.length)))
      buf.copy(bigger, 0, 0, len)
      buf = bigger
    }
    buf.set(piece, len)
    len += piece.length
  }
  const take = (): TextLine => {
    line++
    let out: TextLine
    if (tooLarge) out = { line, text: null, flaw: 'too_large' }
    else {
      const bytes = buf.subarray(0, len)
      out = { line, text: bytes.toString('utf8'), flaw: isUtf8(bytes) ? null : 'not_utf8' }
    }
    len = 0
    tooLarge = false
    pending = false
    // A line that needed a big buffer does not keep it.
    if (buf.length > 65_536) buf = Buffer.allocUnsafe(4096)
    return out
  }
  for await (const chunk of bytes) {
    let start = 0
    for (let nl = chunk.indexOf(0x0a); nl >= 0; nl = chunk.indexOf(0x0a, start)) {
      append(chunk.subarray(start, nl))
      yield take()
      start = nl + 1
    }
    if (start < chunk.length) append(chunk.subarray(start))
  }
  if (pending) yield take()
}
